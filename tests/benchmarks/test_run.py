"""Smoke tests: ``python -m benchmarks.run --quick`` runs its sections on tiny workloads and writes consistent
results (not a timing test: no figure is checked against a target)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.run import main
from medseg.datasets.openkbp import LABELS

ORGANS = set(LABELS)


def _results(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_quick_run_of_the_data_free_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSEG_DATA", str(tmp_path / "no-data"))  # must not need the real data
    out = tmp_path / "results"
    assert main(["--quick", "--only", "end_to_end,inversion,network,scaling", "--out", str(out), "--machine", "t"]) == 0
    results = _results(out, "t")
    assert results["mode"] == "quick" and results["peak"]["nominal_gflops"] > 0
    assert results["weights"]["model_file"]

    (e2e,) = results["sections"]["end_to_end"].values()
    for side in ("medseg", "reference"):
        assert e2e[side]["ok"] == 1, e2e[side].get("errors")
        assert e2e[side]["seconds"]["median"] > 0 and e2e[side]["peak_rss_mib"]["median"] > 100
    assert e2e["agreement"]["grid"]["size_equal"] and e2e["agreement"]["grid"]["max_origin_diff_mm"] < 1e-3
    assert set(e2e["agreement"]["organs"]) == ORGANS
    assert e2e["speedup"] > 0 and set(e2e["targets_met"]) == {
        "speedup >= 8x",
        "peak memory <= 0.25x",
        "agreement Dice >= 0.99",
    }

    methods = results["sections"]["inversion"]["methods"]
    assert all(methods[m]["ok"] == 1 for m in ("resampled", "uniform_cells", "nearest"))
    assert methods["uniform_cells"]["identical_fraction"] >= 0.9999

    network = results["sections"]["network"]
    assert network["ok"], network.get("error")
    levers = {row["lever"]: row for row in network["levers"]}
    assert levers["current"]["windows"] >= 1 and levers["current"]["identical_fraction"] == 1.0
    assert network["flops_per_window"] > 1e9  # a 96^3 U-Net window costs GFLOPs
    assert {"no_grad", "channels_last_3d", "no_body_crop", "overlap=0.25"} <= set(levers)

    scaling = results["sections"]["scaling"]
    assert [row["ok"] for row in scaling["rows"]] == [True, True]
    assert (out / "t-scaling.png").is_file()
    page = (out / "t.md").read_text(encoding="utf-8")
    for heading in ("## End-to-end", "## Inversion", "## Network efficiency", "## Scaling"):
        assert heading in page
    assert "Skipped" not in page


@pytest.mark.slow
@pytest.mark.data
def test_quick_run_of_ingestion_and_training(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert main(["--quick", "--only", "ingestion,training", "--out", str(out), "--machine", "t"]) == 0
    results = _results(out, "t")
    ingestion = results["sections"]["ingestion"]
    assert len(ingestion) == 2
    for series in ingestion.values():
        assert series["medseg"]["ok"] == series["simpleitk"]["ok"] == 1
        same = series["same_volume"]
        assert same["voxels_sha256"] and same["size"] and same["spacing"] and same["origin"] and same["direction"]
    training = results["sections"]["training"]
    assert training["bundle"]["ok"] == training["plain_monai"]["ok"] == 1
    assert training["settings"]["batch"] == "2 cases x 2 patches" and training["throughput_ratio"] > 0
    assert "## Training throughput" in (out / "t.md").read_text(encoding="utf-8")


def test_unknown_section_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--only", "everything"])
    assert "unknown section(s) everything" in capsys.readouterr().err
