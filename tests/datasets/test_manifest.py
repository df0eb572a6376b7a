from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medseg.config import MANIFEST_PATH
from medseg.datasets.manifest import contoured_flags, dump_json, load_manifest
from medseg.datasets.openkbp import LABELS
from medseg.errors import ManifestError

EXPECTED_DATASETS = {"openkbp", "ibsi_sts", "totalsegmentator", "pyradiomics", "dcmqi", "pydicom", "monai"}


def test_repository_manifest_describes_every_dataset() -> None:
    manifest = load_manifest()
    assert set(manifest.datasets) == EXPECTED_DATASETS
    for dataset in manifest.datasets.values():
        assert dataset.licence and dataset.source.url.startswith("https://") and dataset.citations
        assert dataset.files and all(len(f.sha256) == 64 and f.bytes > 0 for f in dataset.files)
    openkbp = manifest.dataset("openkbp")
    assert openkbp.importer == "openkbp"
    assert len(openkbp.cases) == 203 and openkbp.folders == ("openkbp", "openkbp_partial")
    assert len(openkbp.split_ids("train")) == 170 and len(openkbp.split_ids("validation")) == 33
    assert openkbp.labels == {"background": 0, **LABELS}
    full = [c.case_id for c in openkbp.cases if c.contoured == tuple(LABELS)]
    assert len(full) == 34 and all(c.image.startswith("openkbp/") for c in openkbp.cases[:34])
    assert openkbp.folds is not None and sorted(openkbp.folds.cases) == sorted(full)
    # SOURCES.md section 9: organs contoured per case in openkbp_partial/
    partial = [c for c in openkbp.cases if c.image.startswith("openkbp_partial/")]
    counts = {n: sum(len(c.contoured or ()) == n for c in partial) for n in range(1, 7)}
    assert counts == {1: 2, 2: 1, 3: 3, 4: 32, 5: 88, 6: 43}
    per_organ = {name: sum(name in (c.contoured or ()) for c in partial) for name in LABELS}
    assert per_organ == {
        "Brainstem": 150,
        "SpinalCord": 167,
        "RightParotid": 161,
        "LeftParotid": 160,
        "Esophagus": 37,
        "Larynx": 64,
        "Mandible": 100,
    }
    assert all(set(c.structures) == set(c.contoured or ()) for c in openkbp.cases)
    assert all(
        f.path.endswith(".gz") for f in openkbp.files if f.path.startswith("openkbp_partial/") and "/pt_" in f.path
    )
    assert any("Babier" in c.text and c.doi == "10.1002/mp.14845" for c in openkbp.citations)
    assert openkbp.folds is not None and openkbp.folds.n_folds == 5 and openkbp.folds.seed == 12345
    assert openkbp.fingerprint is not None
    assert openkbp.fingerprint.median_spacing_ras == (4.688, 4.688, 2.5)
    ibsi = manifest.dataset("ibsi_sts")
    assert ibsi.licence == "CC BY 3.0" and len(ibsi.cases) == 13
    assert {c.doi for c in ibsi.citations} >= {"10.7937/K9/TCIA.2015.7GO2GSKS", "10.1148/radiol.2020191145"}
    assert all(c.rtstruct and c.dicom_series for c in ibsi.cases)
    with pytest.raises(ManifestError, match="no dataset 'nope'"):
        manifest.dataset("nope")


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(raw))
    return path


def _raw() -> dict[str, Any]:
    return json.loads(MANIFEST_PATH.read_text())


def test_structural_errors_name_the_location(tmp_path: Path) -> None:
    raw = _raw()
    del raw["datasets"]["pyradiomics"]["labels"]
    with pytest.raises(ManifestError, match=r"datasets\.pyradiomics: missing key 'labels'"):
        load_manifest(_write(tmp_path, raw))
    raw = _raw()
    raw["datasets"]["monai"]["files"][0]["bytes"] = "12"
    with pytest.raises(ManifestError, match=r"files\[0\]\.bytes: expected an integer, got '12'"):
        load_manifest(_write(tmp_path, raw))
    raw = _raw()
    raw["datasets"]["openkbp"]["cases"][1]["id"] = raw["datasets"]["openkbp"]["cases"][0]["id"]
    with pytest.raises(ManifestError, match="case id is listed twice"):
        load_manifest(_write(tmp_path, raw))
    raw = _raw()
    raw["datasets"]["openkbp"]["cases"][0]["split"] = "training"
    with pytest.raises(ManifestError, match="'training'"):
        load_manifest(_write(tmp_path, raw))
    raw = _raw()
    raw["datasets"]["openkbp"]["cases"][40]["contoured"] = ["Brainstem", "Tongue"]
    with pytest.raises(ManifestError, match=r"contoured: \['Tongue'\] are not labels"):
        load_manifest(_write(tmp_path, raw))
    raw = _raw()
    raw["datasets"]["openkbp"]["folder"] = ["openkbp", 3]
    with pytest.raises(ManifestError, match="a list of folder names"):
        load_manifest(_write(tmp_path, raw))
    raw = _raw()
    raw["schema_version"] = 2
    with pytest.raises(ManifestError, match="reads version 1"):
        load_manifest(_write(tmp_path, raw))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ManifestError, match="cannot read the manifest as JSON"):
        load_manifest(tmp_path / "broken.json")


def test_contoured_flags_index_by_label_id() -> None:
    labels = {"background": 0, "liver": 1, "spleen": 2, "kidney": 4}
    assert contoured_flags(labels, None) == [1, 1, 1, 1, 1]
    assert contoured_flags(labels, ["spleen"]) == [1, 0, 1, 1, 0]  # id 3 is unused: nothing unknown about it
    assert contoured_flags(labels, []) == [1, 0, 0, 1, 0]
    openkbp = load_manifest().dataset("openkbp")
    assert openkbp.contoured_flags("pt_4") == [1] * 8
    # openkbp_partial/datalist.json: pt_1 has Brainstem, SpinalCord, both parotids and the Mandible
    assert openkbp.contoured_flags("pt_1") == [1, 1, 1, 1, 1, 0, 0, 1]


def test_dump_json_round_trips_and_keeps_records_on_one_line() -> None:
    raw = _raw()
    text = dump_json(raw)
    assert json.loads(text) == raw
    assert text == MANIFEST_PATH.read_text()  # the checked-in file is in this layout
    assert '{"path": "openkbp/datalist.json", "bytes":' in text
