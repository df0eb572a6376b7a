"""The harness: fresh processes, peak memory per child (not the parent's), errors, timeouts, A B A B order."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.harness import interleaved, median_of, ratio, run_fresh, start_measuring, summarize


def allocate_task(megabytes: int) -> dict[str, Any]:
    start = start_measuring()
    block = np.ones(megabytes * 1024**2 // 8)  # touched: resident
    total = float(block.sum())
    return {"seconds": time.perf_counter() - start, "total": total}


def failing_task() -> dict[str, Any]:
    raise ValueError("bad input 42")


def sleeping_task(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"seconds": seconds}


def logging_task(log: str, side: str) -> dict[str, Any]:
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(side + "\n")
    return {"seconds": 0.0}


def test_peak_counts_the_childs_work_not_the_parents_memory() -> None:
    parent_block = np.ones(600 * 1024**2 // 8)  # 600 MiB resident in the parent while the child runs
    small = run_fresh(allocate_task, {"megabytes": 1})
    big = run_fresh(allocate_task, {"megabytes": 300})
    del parent_block
    assert small["ok"] and big["ok"]
    # ru_maxrss of a spawned child inherits the parent's high-water mark; VmHWM does not.
    assert small["ru_maxrss_mib"] > 500
    assert small["peak_rss_mib"] < 300
    assert big["peak_rss_mib"] - big["baseline_rss_mib"] >= 290
    assert big["total"] == 300 * 1024**2 // 8


def test_a_failing_task_is_reported_not_raised() -> None:
    result = run_fresh(failing_task)
    assert not result["ok"]
    assert result["error"] == "ValueError: bad input 42"
    assert "failing_task" in result["traceback"]


def test_a_task_past_its_time_limit_is_killed() -> None:
    started = time.perf_counter()
    result = run_fresh(sleeping_task, {"seconds": 60}, timeout_s=3)
    assert not result["ok"]
    assert "timed out after 3 s" in result["error"]
    assert time.perf_counter() - started < 40


def test_sides_alternate(tmp_path: Path) -> None:
    log = tmp_path / "order.txt"
    runs = interleaved(
        {side: (logging_task, {"log": str(log), "side": side}) for side in ("A", "B")}, repetitions=2, label="t"
    )
    assert log.read_text().split() == ["A", "B", "A", "B"]
    assert [run["repetition"] for run in runs["B"]] == [0, 1]


def test_summaries_use_successful_runs_only() -> None:
    runs = [
        {"ok": True, "seconds": 3.0},
        {"ok": True, "seconds": 1.0},
        {"ok": False, "error": "boom"},
        {"ok": True, "seconds": 2.0},
    ]
    assert median_of(runs, "seconds") == 2.0
    summary = summarize(runs, ("seconds",))
    assert summary["seconds"] == {"median": 2.0, "min": 1.0, "max": 3.0, "values": [3.0, 1.0, 2.0]}
    assert summary["errors"] == ["boom"] and summary["ok"] == 3
    assert median_of([{"ok": False}], "seconds") is None
    assert ratio(6.0, 2.0) == pytest.approx(3.0)
    assert ratio(None, 2.0) is None and ratio(1.0, 0.0) is None


def test_a_child_past_the_memory_cap_is_killed_and_reported() -> None:
    capped = run_fresh(allocate_task, {"megabytes": 1500}, memory_cap_mib=400)
    assert not capped["ok"] and capped["memory_cap_exceeded"]
    assert "out of memory" in capped["error"] and "400 MiB" in capped["error"]
    fits = run_fresh(allocate_task, {"megabytes": 10}, memory_cap_mib=4000)
    assert fits["ok"] and "memory_cap_exceeded" not in fits
