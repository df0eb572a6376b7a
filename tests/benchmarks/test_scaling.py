"""Log-log slopes and the scaling plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.scaling import loglog_slope, plot_scaling


def test_slopes_of_power_laws() -> None:
    xs = [1e6, 8e6, 64e6]
    assert loglog_slope(xs, [3e-6 * x for x in xs]) == pytest.approx(1.0)
    assert loglog_slope(xs, [x**2 for x in xs]) == pytest.approx(2.0)
    assert loglog_slope(xs, [5.0, 5.0, 5.0]) == pytest.approx(0.0)
    assert loglog_slope([1e6], [1.0]) is None
    assert loglog_slope([1e6, 1e6], [1.0, 2.0]) is None


def test_plot_is_written(tmp_path: Path) -> None:
    rows = [
        {"size": [n, n, n], "voxels": n**3, "ok": True, "seconds": n**3 / 1e5, "peak_rss_mib": 500 + n**3 / 1e4}
        for n in (64, 128)
    ]
    scaling = {"rows": [*rows, {"size": [9, 9, 9], "voxels": 729, "ok": False}], "time_exponent": 1.0}
    path = plot_scaling(scaling, tmp_path / "scaling.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_scaling({"rows": rows[:1]}, tmp_path / "one.png") is None
