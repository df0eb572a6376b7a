"""Time per stage and peak memory of one case, for the summary (nnU-Net#1041: nobody reports per-case timing)."""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0: write 5 to clear_refs); False where that is impossible."""
    try:
        _PROC_CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB: since the last reset on Linux, since start elsewhere."""
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0**2 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


class StageClock:
    """Wall time of each named stage of one case, and the process's peak memory while it ran.

    Example::

        clock = StageClock()
        with clock.stage("read"):
            image = read_scan(folder)
        record.seconds, record.peak_memory_mb = clock.seconds, clock.peak_memory_mb()
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        # Where the peak cannot be reset, peak_memory_mb is the whole process's peak (an upper bound).
        self.peak_is_per_case = _reset_peak_rss()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block under ``name`` (repeated stages add up); the time counts even if the block raises."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def peak_memory_mb(self) -> float:
        """Peak resident memory (MiB) since this clock was made, where the OS allows the reset."""
        return peak_rss_mb()
