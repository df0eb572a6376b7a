from __future__ import annotations

import time

import numpy as np
import pytest

from medseg.reporting.timing import StageClock, peak_rss_mb


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
