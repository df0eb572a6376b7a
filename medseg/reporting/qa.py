"""Per-case QA flags: the things a reviewer should look at before trusting a mask.

* ``missing``: an organ of the label table has no voxel.
* ``touches_border``: an organ reaches a face of the scan, so it is probably cut off (its volume is then a lower
  bound); the face is named anatomically (``inferior``, ``left``...).
* ``volume_low`` / ``volume_high``: the volume lies beyond Tukey's far-out fences (k = 3 interquartile ranges)
  of the expected distribution, computed on log-volume because organ volumes are positive and right-skewed.
* ``geometry_repaired``: the reader had to repair the scan's geometry (one flag per repair it reports).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from medseg.reporting.volumes import image_volumes_ml

FAR_OUT_FENCE = 3.0


@dataclass(frozen=True)
class ExpectedVolume:
    """Quartiles of an organ's volume in a reference population, in mL."""

    q1_ml: float
    median_ml: float
    q3_ml: float

    def __post_init__(self) -> None:
        if not 0 < self.q1_ml <= self.median_ml <= self.q3_ml:
            raise ValueError(f"expected 0 < q1 <= median <= q3, got {self}")

    def fences_ml(self, k: float = FAR_OUT_FENCE) -> tuple[float, float]:
        """(low, high): ``q1 / r**k`` and ``q3 * r**k`` with ``r = q3 / q1``, Tukey's fences in log space."""
        log_iqr = math.log(self.q3_ml / self.q1_ml)
        return self.q1_ml * math.exp(-k * log_iqr), self.q3_ml * math.exp(k * log_iqr)


# Quartiles over the 34 OpenKBP cases in the data root (openkbp/datalist.json: clinical head-and-neck contours,
# 128^3 grids); tests/reporting/test_qa.py recomputes them from the data.
OPENKBP_VOLUMES: dict[str, ExpectedVolume] = {
    "Brainstem": ExpectedVolume(24.2, 26.8, 31.1),
    "SpinalCord": ExpectedVolume(25.0, 28.7, 33.5),
    "RightParotid": ExpectedVolume(20.0, 23.7, 30.9),
    "LeftParotid": ExpectedVolume(20.8, 24.2, 29.8),
    "Esophagus": ExpectedVolume(7.6, 11.3, 14.0),
    "Larynx": ExpectedVolume(18.3, 24.4, 30.9),
    "Mandible": ExpectedVolume(47.9, 61.6, 69.8),
}


@dataclass(frozen=True)
class QAFlag:
    """One QA finding. ``label`` is the organ name, or ``None`` for a case-level flag."""

    code: str
    label: str | None
    detail: str

    def __str__(self) -> str:
        return f"{self.code}:{self.label}" if self.label else self.code


def _face_names(direction: np.ndarray) -> list[tuple[str, str]]:
    """(low face, high face) anatomical names per image axis x, y, z, from the direction matrix's columns."""
    names = []
    for axis in range(3):
        column = direction[:, axis]
        dominant = int(np.argmax(np.abs(column)))
        towards = ("left", "posterior", "superior")[dominant]
        away = ("right", "anterior", "inferior")[dominant]
        # Increasing index runs towards +LPS when the component is positive: the index-0 face is the other side.
        names.append((away, towards) if column[dominant] > 0 else (towards, away))
    return names


def touching_faces(mask: np.ndarray, direction: np.ndarray, value: int | None = None) -> list[str]:
    """Anatomical names of the scan faces a binary mask reaches.

    Args:
        mask: bool array (z, y, x); with ``value``, a label array whose voxels equal to ``value`` are the mask
            (compared on the six faces only: no full-volume mask is made).
        direction: 3x3 ITK direction matrix (columns = x, y, z axis directions in LPS).
        value: the label value, when ``mask`` is a label array.
    """
    faces = _face_names(direction)
    touched = []
    for axis_xyz in range(3):
        axis_array = 2 - axis_xyz  # numpy (z, y, x)
        if mask.shape[axis_array] == 0:
            continue
        low_face = np.take(mask, 0, axis=axis_array)
        high_face = np.take(mask, mask.shape[axis_array] - 1, axis=axis_array)
        low = (low_face if value is None else low_face == value).any()
        high = (high_face if value is None else high_face == value).any()
        if low:
            touched.append(faces[axis_xyz][0])
        if high:
            touched.append(faces[axis_xyz][1])
    return touched


def qa_flags(
    labels: sitk.Image,
    label_names: Mapping[int, str],
    expected: Mapping[str, ExpectedVolume] | None = None,
    geometry_repairs: Sequence[str] = (),
    fence: float = FAR_OUT_FENCE,
    volumes_ml: Mapping[int, float] | None = None,
) -> list[QAFlag]:
    """QA flags of one segmented case (see the module notes).

    Args:
        labels: the label map (x, y, z) in the scan's geometry.
        label_names: ``{label value: organ name}`` of the labels the model predicts.
        expected: expected volume quartiles per organ name (e.g. :data:`OPENKBP_VOLUMES`); organs not in it get no
            volume check. ``None``: no volume checks.
        geometry_repairs: what the reader changed to make the geometry usable, one sentence each.
        fence: Tukey fence multiplier (3 = "far out").
        volumes_ml: ``{label value: mL}`` of ``labels`` (:func:`medseg.reporting.volumes.image_volumes_ml`) when
            the caller has them; else counted here.
    """
    flags = [QAFlag("geometry_repaired", None, repair) for repair in geometry_repairs]
    volumes = image_volumes_ml(labels, label_names) if volumes_ml is None else volumes_ml
    voxels = sitk.GetArrayViewFromImage(labels)
    direction = np.asarray(labels.GetDirection(), dtype=float).reshape(3, 3)
    for value, name in sorted(label_names.items()):
        volume = volumes[value]
        if volume == 0.0:
            flags.append(QAFlag("missing", name, "no voxel has this label"))
            continue
        faces = touching_faces(voxels, direction, value)
        if faces:
            flags.append(QAFlag("touches_border", name, f"reaches the {', '.join(faces)} border of the scan"))
        if expected and name in expected:
            low, high = expected[name].fences_ml(fence)
            if volume < low:
                flags.append(QAFlag("volume_low", name, f"{volume:.1f} mL < {low:.1f} mL"))
            elif volume > high:
                flags.append(QAFlag("volume_high", name, f"{volume:.1f} mL > {high:.1f} mL"))
    return flags
