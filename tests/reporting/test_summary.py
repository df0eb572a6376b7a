from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.errors import InputError
from medseg.reporting.summary import (
    CaseRecord,
    StageClock,
    merge_summaries,
    peak_rss_mb,
    read_summary,
    summary_csv_text,
    write_summary,
)


def _ok(case_id: str, finished_at: str = "2025-01-01T10:00:00+00:00", **extra: object) -> CaseRecord:
    record = CaseRecord(
        case_id=case_id,
        status="ok",
        input=f"/data/{case_id}",
        series="1.2.3 CT Body 3.0",
        volumes_ml={"Brainstem": 26.123, "Larynx": 0.0},
        seconds={"read": 1.5, "infer": 10.25},
        peak_memory_mb=2048.4,
        qa_flags=["missing:Larynx"],
        finished_at=finished_at,
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_csv_and_json_hold_one_row_per_case(tmp_path: Path) -> None:
    image = sitk.Image(4, 5, 6, sitk.sitkInt16)
    image.SetSpacing((0.5, 0.5, 2.0))
    first = _ok("b_case")
    first.set_geometry(image)
    failed = CaseRecord(
        "a_case", "failed", input="/data/a", error="GeometryError: gap\nat slice 12", seconds={"read": 0.2}
    )
    failed.volumes_ml["Mandible"] = math.nan  # never valid JSON: must come out as null / empty
    csv_path, json_path = write_summary([first, failed], tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary.csv", "summary.json"]

    rows = list(csv.DictReader(csv_path.open(newline="")))
    assert [row["case_id"] for row in rows] == ["a_case", "b_case"]
    assert rows[0]["error"] == "GeometryError: gap at slice 12"
    assert rows[1]["size"] == "4x5x6" and rows[1]["spacing_mm"] == "0.5 0.5 2"
    assert rows[1]["volume_ml:Brainstem"] == "26.12" and rows[0]["volume_ml:Brainstem"] == ""
    assert rows[0]["volume_ml:Mandible"] == ""
    assert rows[1]["seconds:infer"] == "10.25" and rows[0]["seconds:infer"] == ""
    assert rows[1]["qa_flags"] == "missing:Larynx" and rows[1]["peak_memory_mb"] == "2048"

    document = json.loads(json_path.read_text())
    assert document["format"] == "medseg-summary" and document["counts"] == {"ok": 1, "failed": 1, "skipped": 0}
    assert document["cases"][0]["volumes_ml"]["Mandible"] is None
    back = read_summary(json_path)
    assert back[1] == first
    assert back[1].direction == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def test_shards_merge_keeping_the_latest_record(tmp_path: Path) -> None:
    early_failure = CaseRecord("pt_2", "failed", error="out of memory", finished_at="2025-01-01T09:00:00+00:00")
    _, shard1 = write_summary([_ok("pt_1"), early_failure], tmp_path / "shard1")
    # The re-run finished later, written in another time zone.
    _, shard2 = write_summary([_ok("pt_2", finished_at="2025-01-01T11:30:00+02:00"), _ok("pt_3")], tmp_path / "s2")
    csv_path, json_path = merge_summaries([shard1, shard2], tmp_path / "merged")
    merged = read_summary(json_path)
    assert [(r.case_id, r.status) for r in merged] == [("pt_1", "ok"), ("pt_2", "ok"), ("pt_3", "ok")]
    assert json.loads(json_path.read_text())["merged_from"] == [str(shard1), str(shard2)]
    # 11:30+02:00 is 09:30 UTC, after the 09:00 UTC failure; reversed order gives the same answer.
    _, again = merge_summaries([shard2, shard1], tmp_path / "merged2")
    assert [r.status for r in read_summary(again)] == ["ok", "ok", "ok"]
    assert csv_path.read_text().count("\n") == 4


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="status"):
        CaseRecord("x", "done")
    not_summary = tmp_path / "other.json"
    not_summary.write_text('{"cases": []}')
    with pytest.raises(InputError, match="not a medseg summary"):
        read_summary(not_summary)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(InputError, match="cannot read"):
        read_summary(broken)
    with pytest.raises(ValueError, match="no summaries"):
        merge_summaries([], tmp_path)
    assert summary_csv_text([]).startswith("case_id,status,error")


def test_warnings_reach_both_files_one_line_each_and_older_summaries_still_read(tmp_path: Path) -> None:
    warned = _ok("c_case")
    warned.warnings = [
        "uneven slice spacing: 2.5 mm except 5.0 mm after slice 3;\nresampled to 2.5 mm",
        "dicom-seg not written: input is nifti, not DICOM",
    ]
    csv_path, json_path = write_summary([warned, _ok("d_case")], tmp_path)
    rows = list(csv.DictReader(csv_path.open(newline="")))
    assert rows[0]["warnings"] == (
        "uneven slice spacing: 2.5 mm except 5.0 mm after slice 3; resampled to 2.5 mm | "
        "dicom-seg not written: input is nifti, not DICOM"
    )
    assert rows[1]["warnings"] == "" and rows[0]["qa_flags"] == "missing:Larynx"
    assert read_summary(json_path)[0].warnings == warned.warnings
    # a summary written before records had warnings
    document = json.loads(json_path.read_text())
    for case in document["cases"]:
        del case["warnings"]
    json_path.write_text(json.dumps(document))
    assert [record.warnings for record in read_summary(json_path)] == [[], []]


def test_stages_add_up_and_count_when_they_fail() -> None:
    clock = StageClock()
    with clock.stage("read"):
        time.sleep(0.02)
    with pytest.raises(RuntimeError), clock.stage("infer"):
        raise RuntimeError("boom")
    with clock.stage("read"):
        time.sleep(0.02)
    assert list(clock.seconds) == ["read", "infer"]
    assert clock.seconds["read"] >= 0.04 and clock.seconds["infer"] < 0.02


def test_peak_memory_sees_a_large_allocation() -> None:
    clock = StageClock()
    before = clock.peak_memory_mb()
    block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
    assert block.sum() > 0
    del block
    assert clock.peak_memory_mb() >= before + 150
    if clock.peak_is_per_case:  # Linux: a new clock starts from the current footprint again
        assert StageClock().peak_memory_mb() < before + 100
    assert peak_rss_mb() > 0
