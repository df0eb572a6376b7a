"""The end-to-end table of the benchmark page: the medseg bf16 row appears only where the run measured it."""

from __future__ import annotations

from typing import Any

from benchmarks.report import _end_to_end


def _side(seconds: float, peak: float) -> dict[str, Any]:
    return {
        "runs": 1,
        "ok": 1,
        "seconds": {"median": seconds},
        "peak_rss_mib": {"median": peak},
        "baseline_rss_mib": {"median": 500.0},
        "stages_median_seconds": {"inference": seconds / 2},
    }


def _workload(with_bf16: bool) -> dict[str, Any]:
    result: dict[str, Any] = {
        "medseg": _side(2.0, 700.0),
        "reference": _side(6.0, 1400.0),
        "speedup": 3.0,
        "memory_ratio": 0.5,
        "agreement": {"ok": True, "grid": {"size": [96, 96, 48], "size_equal": True}, "organs": {}},
        "min_organ_dice": 0.99,
        "in_domain": True,
        "targets_met": {"speedup >= 8x": False},
    }
    if with_bf16:
        result["medseg_bf16"] = _side(1.5, 650.0)
        result["bf16"] = {
            "speedup": 4.0,
            "speedup_vs_medseg_fp32": 2.0 / 1.5,
            "memory_ratio": 650.0 / 1400.0,
            "agreement_vs_medseg_fp32": {
                "ok": True,
                "identical_voxel_fraction": 0.9995,
                "organs": {"Mandible": {"dice": 0.9971}, "Larynx": {"dice": None}},
            },
            "min_organ_dice_vs_medseg_fp32": 0.9971,
        }
    return result


def test_bf16_row_and_agreement_line() -> None:
    page = "\n".join(_end_to_end({"ct": _workload(with_bf16=True)}))
    assert "| ct, medseg bf16 | 96x96x48 | 1.50 | 6.00 | 4.00x | 650 | 1400 | 0.46x | 0.9971 vs medseg fp32 |" in page
    assert "1.33x the speed of medseg fp32" in page
    assert "| ct | medseg bf16 | inference 0.75 | 500 |" in page
    assert "identical voxels 0.9995, per organ Dice Mandible 0.9971, Larynx n/a" in page


def test_no_bf16_row_without_the_measurement() -> None:
    page = "\n".join(_end_to_end({"ct": _workload(with_bf16=False)}))
    assert "bf16" not in page
    assert "| ct | 96x96x48 | 2.00 | 6.00 | 3.00x | 700 | 1400 | 0.50x | 0.9900 |" in page
