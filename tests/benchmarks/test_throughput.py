"""Throughput rows: the floor / large-scan / batch tables of the benchmark page."""

from __future__ import annotations

from typing import Any

from benchmarks.report import _batch, _floor


def _side(seconds: float, peak: float, **extra: float) -> dict[str, Any]:
    summary: dict[str, Any] = {"runs": 1, "ok": 1, "seconds": {"median": seconds}, "peak_rss_mib": {"median": peak}}
    summary.update({key: {"median": value} for key, value in extra.items()})
    return summary


def test_floor_table_shows_a_capped_stock_chain_as_out_of_memory() -> None:
    section = {
        "big_1000": {
            "floor": _side(2.0, 900.0),
            "medseg": {**_side(20.0, 1800.0), "stages_median_seconds": {"read": 2.0, "preprocess": 3.0}},
            "reference": {"runs": 1, "ok": 0, "errors": ["out of memory: resident memory passed the cap of 8192 MiB"]},
            "medseg_over_floor": 10.0,
            "reference_over_floor": None,
            "speedup": None,
            "reference_memory_cap_mib": 8192.0,
        }
    }
    page = "\n".join(_floor(section, "Large scan", "note"))
    assert "| big_1000 | 2.00 | 20.00 | out of memory" in page and "| 10.00x | n/a |" in page
    assert "cap of 8192 MiB" in page and "read 2.00, preprocess 3.00" in page


def test_batch_table_has_per_case_and_whole_process_time() -> None:
    section = {
        "cases": 10,
        "medseg": {
            **_side(12.0, 900.0, per_case_median_seconds=1.2, process_seconds=20.0, setup_seconds=1.0),
            "precision": "fp32",
            "stages_median_seconds": {"inference": 0.8, "invert": 0.02},
        },
        "medseg_auto": {
            **_side(8.0, 850.0, per_case_median_seconds=0.8, process_seconds=16.0, setup_seconds=1.0),
            "precision": "bf16",
        },
        "reference": _side(40.0, 1500.0, per_case_median_seconds=4.0, process_seconds=50.0, setup_seconds=1.0),
        "per_case_speedup": 4.0 / 1.2,
        "process_speedup": 2.5,
        "memory_ratio": 0.6,
        "per_case_speedup_auto": 5.0,
        "process_speedup_auto": 3.125,
        "memory_ratio_auto": 0.57,
    }
    page = "\n".join(_batch(section))
    assert "## A batch of 10 cases" in page
    assert "| medseg fp32 (ran fp32) | 1.20 | 12.00 | 20.00 | 1.00 | 900 | inference 0.80, invert 0.02 |" in page
    assert "| medseg auto (ran bf16) | 0.80 | 8.00 | 16.00 | 1.00 | 850 | n/a |" in page
    assert "medseg fp32 per case: 3.33x" in page and "whole process: 2.50x" in page
    assert "medseg auto per case: 5.00x" in page and "whole process: 3.12x" in page


def test_batch_table_without_an_auto_side() -> None:
    section = {
        "cases": 2,
        "medseg": _side(2.0, 900.0, per_case_median_seconds=1.0, process_seconds=6.0, setup_seconds=0.5),
        "reference": _side(8.0, 1500.0, per_case_median_seconds=4.0, process_seconds=12.0, setup_seconds=0.5),
        "per_case_speedup": 4.0,
        "process_speedup": 2.0,
        "memory_ratio": 0.6,
    }
    page = "\n".join(_batch(section))
    assert "medseg auto" not in page and "| medseg fp32 | 1.00 |" in page
