"""What each label value means: a name, a display colour and the DICOM codes PACS and Slicer use to recognise it.

The codes are the DICOM / SNOMED-CT concepts of PS3.16 CID 7150 (segmentation property category) and CID 7151
(segmentation property type), as pydicom ships them, so a DICOM SEG, an RTSTRUCT and a ``.seg.nrrd`` written from
the same table describe each organ the same way. Laterality is a type modifier (CID 244), as in Slicer's
terminology, rather than a separate type per side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from medseg.datasets.openkbp import LABELS as OPENKBP_LABELS

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class LabelInfo:
    """One label value of a label map.

    Attributes:
        name: segment / ROI name shown to the user (``"RightParotid"``).
        color: display colour, RGB 0-255.
        category: segmented property category (CID 7150), e.g. SCT 91723000 "Anatomical Structure".
        type: segmented property type (CID 7151), e.g. SCT 45289007 "Parotid gland".
        type_modifier: laterality (CID 244: SCT 24028007 "Right", 7771000 "Left"), or ``None``.
    """

    name: str
    color: RGB
    category: Code
    type: Code
    type_modifier: Code | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a label needs a non-empty name")
        if len(self.color) != 3 or any(not 0 <= int(c) <= 255 for c in self.color):
            raise ValueError(f"label {self.name!r}: colour {self.color!r} is not RGB in 0..255")


# Anatomical Structure (SCT 91723000) is the CID 7150 category for organs; pydicom's keyword table has it.
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure
# Slicer's own default for a new segment: never wrong, used for names we do not recognise.
GENERIC_CATEGORY = codes.SCT.Tissue
GENERIC_TYPE = codes.SCT.Tissue

# name (lower case, no separators) -> (type, laterality) for the organs medseg segments.
_KNOWN_TYPES: dict[str, tuple[Code, Code | None]] = {
    "brainstem": (codes.SCT.BrainStem, None),
    "spinalcord": (codes.SCT.SpinalCord, None),
    "rightparotid": (codes.SCT.ParotidGland, codes.SCT.Right),
    "leftparotid": (codes.SCT.ParotidGland, codes.SCT.Left),
    "parotidr": (codes.SCT.ParotidGland, codes.SCT.Right),
    "parotidl": (codes.SCT.ParotidGland, codes.SCT.Left),
    "esophagus": (codes.SCT.Esophagus, None),
    "oesophagus": (codes.SCT.Esophagus, None),
    "larynx": (codes.SCT.Larynx, None),
    "mandible": (codes.SCT.Mandible, None),
}

# Distinct on a grey CT: no white or grey (bone and soft tissue would hide them).
PALETTE: tuple[RGB, ...] = (
    (230, 25, 75),
    (255, 225, 25),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def label_info_for(name: str, color: RGB | None = None, index: int = 0) -> LabelInfo:
    """The :class:`LabelInfo` for an organ name: known head-and-neck organs get their SNOMED-CT codes, other names
    the generic "Tissue" category and type. Without ``color``, the ``index``-th palette colour is used."""
    type_code, modifier = _KNOWN_TYPES.get(_key(name), (None, None))
    return LabelInfo(
        name=name,
        color=color if color is not None else PALETTE[index % len(PALETTE)],
        category=ANATOMICAL_STRUCTURE if type_code is not None else GENERIC_CATEGORY,
        type=type_code if type_code is not None else GENERIC_TYPE,
        type_modifier=modifier,
    )


def label_table(names: Mapping[int, str]) -> dict[int, LabelInfo]:
    """A label table from ``{label value: name}`` (e.g. a datalist's ``label_ids`` inverted), with codes and
    palette colours filled in. Label value 0 is background and must not be listed."""
    if 0 in names:
        raise ValueError("label value 0 is background; list only the foreground labels")
    return {value: label_info_for(name, index=value - 1) for value, name in sorted(names.items())}


# The OpenKBP organs at risk, label ids as in openkbp/datalist.json.
HEAD_NECK_LABELS: dict[int, LabelInfo] = label_table({label_id: name for name, label_id in OPENKBP_LABELS.items()})


def check_label_table(table: Mapping[int, LabelInfo]) -> None:
    """Raise ``ValueError`` unless the table maps distinct uint8 label values 1..255 to distinct names."""
    if not table:
        raise ValueError("the label table is empty")
    bad = [value for value in table if not 1 <= int(value) <= 255]
    if bad:
        raise ValueError(f"label values must be 1..255 for a uint8 label map, got {bad}")
    names = [info.name for info in table.values()]
    if len(set(names)) != len(names):
        raise ValueError(f"label names must be distinct, got {names}")


_COUNT_CHUNK = 1 << 22  # voxels per np.bincount call: it casts its input to int64 (8 bytes a voxel: 32 MiB)


def label_counts(voxels: np.ndarray, minlength: int = 256) -> np.ndarray:
    """Voxels per label value of a non-negative integer label array (any shape): ``np.bincount`` taken in chunks
    of 4 M voxels, because ``np.bincount`` makes an int64 copy of its input (2 GiB for a 512 x 512 x 1000 map)."""
    flat = voxels.reshape(-1)
    counts = np.zeros(minlength, dtype=np.int64)
    for start in range(0, flat.size, _COUNT_CHUNK):
        chunk = np.bincount(flat[start : start + _COUNT_CHUNK], minlength=minlength)
        if chunk.size > counts.size:
            chunk[: counts.size] += counts
            counts = chunk
        else:
            counts[: chunk.size] += chunk
    return counts


def present_labels(voxels: np.ndarray, table: Mapping[int, LabelInfo]) -> list[int]:
    """The non-zero label values in a uint8 label array (any shape), sorted.

    Raises:
        ValueError: if a value in ``voxels`` is not in ``table`` (a writer would drop it silently otherwise).
    """
    present = np.flatnonzero(label_counts(voxels)[1:]) + 1
    undescribed = sorted(set(present.tolist()) - set(table))
    if undescribed:
        raise ValueError(f"label values {undescribed} are in the mask but not in the label table")
    return [int(v) for v in present]
