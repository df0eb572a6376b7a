from __future__ import annotations

import numpy as np
import pytest
from pydicom.sr.codedict import codes

from medseg.io.writers.labels import (
    HEAD_NECK_LABELS,
    LabelInfo,
    check_label_table,
    label_info_for,
    label_table,
    present_labels,
)


def test_head_neck_table_has_the_openkbp_ids_and_snomed_codes() -> None:
    names = {value: info.name for value, info in HEAD_NECK_LABELS.items()}
    assert names == {
        1: "Brainstem",
        2: "SpinalCord",
        3: "RightParotid",
        4: "LeftParotid",
        5: "Esophagus",
        6: "Larynx",
        7: "Mandible",
    }
    types = {info.name: (info.type.value, info.type.scheme_designator) for info in HEAD_NECK_LABELS.values()}
    assert types["Brainstem"] == ("119238007", "SCT")
    assert types["SpinalCord"] == ("2748008", "SCT")
    assert types["RightParotid"] == types["LeftParotid"] == ("45289007", "SCT")
    assert types["Esophagus"] == ("32849002", "SCT")
    assert types["Larynx"] == ("4596009", "SCT")
    assert types["Mandible"] == ("91609006", "SCT")
    assert all(info.category == codes.SCT.AnatomicalStructure for info in HEAD_NECK_LABELS.values())
    assert HEAD_NECK_LABELS[3].type_modifier == codes.SCT.Right
    assert HEAD_NECK_LABELS[4].type_modifier == codes.SCT.Left
    assert HEAD_NECK_LABELS[1].type_modifier is None
    assert len({info.color for info in HEAD_NECK_LABELS.values()}) == 7


def test_names_are_matched_loosely_and_unknown_names_get_generic_codes() -> None:
    assert label_info_for("Parotid_R").type_modifier == codes.SCT.Right
    assert label_info_for("spinal cord").type == codes.SCT.SpinalCord
    generic = label_info_for("GTV_Mass", color=(1, 2, 3))
    assert (generic.category, generic.type, generic.type_modifier) == (codes.SCT.Tissue, codes.SCT.Tissue, None)
    assert generic.color == (1, 2, 3)


def test_bad_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="colour"):
        LabelInfo("x", (0, 0, 300), codes.SCT.Tissue, codes.SCT.Tissue)
    with pytest.raises(ValueError, match="name"):
        LabelInfo(" ", (0, 0, 0), codes.SCT.Tissue, codes.SCT.Tissue)
    with pytest.raises(ValueError, match="background"):
        label_table({0: "background", 1: "liver"})
    with pytest.raises(ValueError, match=r"1\.\.255"):
        check_label_table({256: label_info_for("a")})
    with pytest.raises(ValueError, match="distinct"):
        check_label_table({1: label_info_for("a"), 2: label_info_for("a")})
    with pytest.raises(ValueError, match="empty"):
        check_label_table({})


def test_present_labels_refuses_undescribed_values() -> None:
    voxels = np.array([[0, 3, 3], [1, 0, 0]], dtype=np.uint8)
    table = label_table({1: "a", 2: "b", 3: "c"})
    assert present_labels(voxels, table) == [1, 3]
    with pytest.raises(ValueError, match=r"\[3\]"):
        present_labels(voxels, label_table({1: "a"}))
