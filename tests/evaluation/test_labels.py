from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.errors import InputError
from medseg.evaluation.labels import parse_label_spec


def test_no_spec_means_every_label() -> None:
    assert parse_label_spec(None) is None
    assert parse_label_spec("  ") is None


def test_name_equals_id_pairs_sorted_by_id() -> None:
    assert parse_label_spec("liver=5, spleen=1,7") == {1: "spleen", 5: "liver", 7: "label_7"}


def test_json_file_id_to_name_and_name_to_id(tmp_path: Path) -> None:
    ts_style = tmp_path / "labels_total.json"
    ts_style.write_text(json.dumps({"1": "spleen", "5": "liver"}))
    assert parse_label_spec(str(ts_style)) == {1: "spleen", 5: "liver"}
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({"name": "x", "labels": {"background": 0, "liver": 1, "tumour": 2}}))
    assert parse_label_spec(str(dataset_json)) == {1: "liver", 2: "tumour"}
    assert parse_label_spec('{"background": 0, "kidney": 3}') == {3: "kidney"}


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("liver=five", "'liver=five'"),
        ("liver=-1", "'liver=-1'"),
        ("liver=5,spleen=5", "given twice"),
        ("background=0", "no foreground"),
        ('{"liver": [1, 2]}', "region labels"),
        ("{not json", "not valid JSON"),
        ("missing_labels.json", "does not exist"),
    ],
)
def test_bad_specs_name_the_problem(spec: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        parse_label_spec(spec)


def test_real_totalsegmentator_label_file(data_root: Path) -> None:
    labels = parse_label_spec(str(data_root / "totalsegmentator" / "labels_total.json"))
    assert labels is not None
    assert len(labels) == 117
    assert (labels[1], labels[5], labels[117]) == ("spleen", "liver", "costal_cartilages")
