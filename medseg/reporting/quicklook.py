"""A quick-look PNG per case: axial, coronal and sagittal slices through the segmented organs' centre, CT in an HU
window with the organs as coloured overlays, a legend with each organ's volume, and orientation letters.

Both images are looked at in LPS index order (the axis permutation and flips of ``sitk.DICOMOrient``, applied as a
numpy view: no copy of the volume), so the views follow the radiological convention whatever the file's
orientation: axial seen from the feet (patient's right on the image's left, anterior up), coronal from the front
(right on the left, superior up), sagittal from the patient's left (anterior on the left, superior up). Each
panel is drawn in millimetres, so anisotropic voxels keep their true physical aspect ratio. For an oblique scan
the letters name the nearest anatomical axis.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from medseg.io.files import atomic_path
from medseg.io.geometry import same_grid
from medseg.io.writers.labels import LabelInfo
from medseg.reporting.volumes import image_volumes_ml

SOFT_TISSUE_WINDOW = (40.0, 400.0)  # (level, width) in HU
OVERLAY_ALPHA = 0.45
# Panels are cropped to the body (above -500 HU: skin, not air or blankets) plus a margin, so the organs are big.
BODY_HU = -500.0
BOX_MARGIN_MM = 10.0


_SLAB = 32  # slices per pass: the full-volume masks of a 1000-slice CT would take a gigabyte each


def _slab_profiles(mask_of: Callable[[slice], np.ndarray], shape: Sequence[int]) -> list[np.ndarray]:
    """Per axis (z, y, x), the count of voxels of ``mask_of(z slab)`` in each index along that axis, built slab by
    slab along z so that no full-volume mask is made."""
    profiles = [np.zeros(int(n), dtype=np.int64) for n in shape[:3]]
    for z0 in range(0, int(shape[0]), _SLAB):
        mask = mask_of(slice(z0, min(z0 + _SLAB, int(shape[0]))))
        profiles[0][z0 : z0 + mask.shape[0]] = mask.sum(axis=(1, 2))
        profiles[1] += mask.sum(axis=(0, 2))
        profiles[2] += mask.sum(axis=(0, 1))
    return profiles


def organ_centre(label_lps: np.ndarray) -> tuple[int, int, int]:
    """Index (z, y, x) of the centre of mass of all labelled voxels, or of the volume when none is labelled.

    Args:
        label_lps: label array (z, y, x).
    """
    profiles = _slab_profiles(lambda z: np.asarray(label_lps[z]) > 0, label_lps.shape)
    total = int(profiles[0].sum())
    if total == 0:
        return tuple(int(n // 2) for n in label_lps.shape)  # type: ignore[return-value]
    centre = [round(float(np.arange(len(profile)) @ profile) / total) for profile in profiles]
    return centre[0], centre[1], centre[2]


def body_box(
    image: np.ndarray, label_voxels: np.ndarray, spacing_zyx: tuple[float, float, float]
) -> list[tuple[int, int]]:
    """Index ranges [start, stop) along (z, y, x) of the body (voxels above BODY_HU) and the labels, grown by
    BOX_MARGIN_MM; the whole volume when nothing is above the threshold."""
    profiles = _slab_profiles(
        lambda z: (np.asarray(image[z]) > BODY_HU) | (np.asarray(label_voxels[z]) > 0), np.shape(image)
    )
    box = []
    for axis, profile in enumerate(profiles):
        hits = np.flatnonzero(profile)
        size = profile.size
        if hits.size == 0:
            box.append((0, size))
            continue
        margin = int(np.ceil(BOX_MARGIN_MM / spacing_zyx[axis]))
        box.append((max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, size)))
    return box


def _overlay(labels_2d: np.ndarray, colours: np.ndarray) -> np.ndarray:
    rgba = colours[labels_2d].astype(np.float32) / 255.0
    rgba[..., 3] = np.where(labels_2d > 0, OVERLAY_ALPHA, 0.0)
    return rgba


def _rgb(info: LabelInfo) -> tuple[float, float, float]:
    red, green, blue = (c / 255.0 for c in info.color)
    return red, green, blue


@dataclass(frozen=True)
class View:
    """One panel, ready to draw: row 0 at the top, column 0 on the left.

    Attributes:
        ct: HU slice, shape (rows, columns).
        labels: label slice, same shape.
        size_mm: (width, height) of the slice in mm: the physical aspect ratio.
        letters: anatomical side at the (left, right, top, bottom) edges.
        title: which plane and index (in LPS-ordered voxels).
    """

    ct: np.ndarray
    labels: np.ndarray
    size_mm: tuple[float, float]
    letters: tuple[str, str, str, str]
    title: str


def lps_voxels(image: sitk.Image) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The voxels of a 3D ``image`` in LPS index order, (z, y, x), as a read-only strided view (no copy), and the
    spacing (x, y, z) in that order: what ``sitk.GetArrayViewFromImage(sitk.DICOMOrient(image, "LPS"))`` and its
    spacing are, without the filter's copy of the whole volume (gigabytes for a 1000-slice CT).

    The permutation and flips are ``DICOMOrientImageFilter``'s own, found by running it on a one-voxel image with
    ``image``'s direction.
    """
    orient = sitk.DICOMOrientImageFilter()
    orient.SetDesiredCoordinateOrientation("LPS")
    probe = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    probe.SetDirection(image.GetDirection())
    orient.Execute(probe)
    order, flips = orient.GetPermuteOrder(), orient.GetFlipAxes()  # output axis j (x, y, z) is input axis order[j]
    voxels = sitk.GetArrayViewFromImage(image).transpose([2 - order[2 - axis] for axis in range(3)])
    flipped = tuple(slice(None, None, -1) if flips[2 - axis] else slice(None) for axis in range(3))
    spacing = image.GetSpacing()
    return voxels[flipped], (spacing[order[0]], spacing[order[1]], spacing[order[2]])


def orthogonal_views(ct: sitk.Image, labels: sitk.Image) -> list[View]:
    """Axial, coronal and sagittal views through the labelled voxels' centre, cropped to the body.

    Raises:
        ValueError: if ``labels`` is not on ``ct``'s grid.
    """
    if not same_grid(ct, labels):
        raise ValueError("the label map is not on the CT's grid (size, spacing, origin or direction differ)")
    # (z, y, x): index x grows towards the patient's left, y towards posterior, z towards superior.
    # Views, not copies (a CT can be gigabytes); only the three slices are copied out below.
    image, (sx, sy, sz) = lps_voxels(ct)
    label_voxels, _ = lps_voxels(labels)
    kz, jy, ix = organ_centre(label_voxels)
    (z0, z1), (y0, y1), (x0, x1) = body_box(image, label_voxels, (sz, sy, sx))
    wx, wy, wz = (x1 - x0) * sx, (y1 - y0) * sy, (z1 - z0) * sz
    # Coronal and sagittal rows run inferior -> superior in the array: flip them so superior is on top.
    axial = (kz, slice(y0, y1), slice(x0, x1))
    coronal = (slice(z1 - 1, z0 - 1 if z0 else None, -1), jy, slice(x0, x1))
    sagittal = (slice(z1 - 1, z0 - 1 if z0 else None, -1), slice(y0, y1), ix)
    return [
        View(image[axial].copy(), label_voxels[axial].copy(), (wx, wy), ("R", "L", "A", "P"), f"axial z={kz}"),
        View(image[coronal].copy(), label_voxels[coronal].copy(), (wx, wz), ("R", "L", "S", "I"), f"coronal y={jy}"),
        View(image[sagittal].copy(), label_voxels[sagittal].copy(), (wy, wz), ("A", "P", "S", "I"), f"sagittal x={ix}"),
    ]


def write_quicklook(
    ct: sitk.Image,
    labels: sitk.Image,
    label_table: Mapping[int, LabelInfo],
    path: str | os.PathLike[str],
    title: str = "",
    window: tuple[float, float] = SOFT_TISSUE_WINDOW,
    dpi: int = 100,
) -> Path:
    """Write the quick-look PNG of one case atomically (1500 x 600 pixels at the default dpi).

    Args:
        ct: the scan in HU (x, y, z).
        labels: its uint8 label map on the same grid.
        label_table: names and colours; the legend lists every label, with its volume or "missing".
        path: output ``.png``.
        title: heading, typically the case id.
        window: (level, width) in HU.

    Raises:
        ValueError: if ``labels`` is not on ``ct``'s grid.
    """
    path = Path(path)
    views = orthogonal_views(ct, labels)
    colours = np.zeros((256, 4), dtype=np.uint8)
    for value, info in label_table.items():
        colours[value, :3] = info.color
    level, width = window
    low, high = level - width / 2.0, level + width / 2.0

    figure = Figure(figsize=(15, 6), dpi=dpi, facecolor="black")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3, gridspec_kw={"width_ratios": [view.size_mm[0] for view in views]})
    for ax, view in zip(axes, views, strict=True):
        extent = (0.0, view.size_mm[0], view.size_mm[1], 0.0)  # millimetres: equal aspect = physical aspect
        ax.imshow(view.ct, cmap="gray", vmin=low, vmax=high, extent=extent, interpolation="bilinear")
        ax.imshow(_overlay(view.labels, colours), extent=extent, interpolation="nearest")
        ax.set_aspect("equal")
        ax.set_title(view.title, color="white", fontsize=10, pad=18)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("dimgray")
        # Letters just outside the image, so they never hide anatomy (thin coronal/sagittal strips included).
        style = {"color": "yellow", "fontsize": 12, "fontweight": "bold", "transform": ax.transAxes}
        left, right, top, bottom = view.letters
        ax.text(-0.01, 0.5, left, ha="right", va="center", **style)
        ax.text(1.01, 0.5, right, ha="left", va="center", **style)
        ax.text(0.5, 1.01, top, ha="center", va="bottom", **style)
        ax.text(0.5, -0.01, bottom, ha="center", va="top", **style)

    volumes = image_volumes_ml(labels, label_table)
    handles = [
        Patch(
            facecolor=_rgb(info) if volumes[value] > 0 else "none",
            edgecolor=_rgb(info),
            label=f"{info.name} {volumes[value]:.1f} mL" if volumes[value] > 0 else f"{info.name} (missing)",
        )
        for value, info in sorted(label_table.items())
    ]
    figure.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), 7) or 1, frameon=False, labelcolor="white"
    )
    spacing = " x ".join(f"{v:.2f}" for v in ct.GetSpacing())
    heading = f"{title}   " if title else ""
    figure.suptitle(f"{heading}W {width:g} / L {level:g} HU   spacing {spacing} mm", color="white", fontsize=11)
    figure.subplots_adjust(left=0.02, right=0.98, top=0.86, bottom=0.14, wspace=0.1)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", facecolor=figure.get_facecolor())
    return path
