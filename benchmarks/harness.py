"""Run benchmark sides in fresh processes, interleaved, and summarise them with medians and ratios.

Every measured run is one call of a module-level *task* function in a new interpreter (``multiprocessing`` spawn),
so the two sides of a comparison never share imports, caches, allocator state or peak memory. A task does its own
setup (imports, network, weights), calls :func:`start_measuring` right before the work it wants timed, and returns a
dict with at least ``seconds``. The harness adds, read in the child after the task returned:

``peak_rss_mib``    the process's peak resident memory since :func:`start_measuring` (Linux ``VmHWM`` after
                    resetting it through ``/proc/self/clear_refs``): everything resident during the work, the
                    interpreter, torch and the network included, but not transient peaks of the setup.
``baseline_rss_mib`` resident memory when :func:`start_measuring` was called (imports, network, weights).
``ru_maxrss_mib``   ``getrusage(RUSAGE_SELF).ru_maxrss`` for the record. It is *not* used: on Linux a spawned child
                    inherits the parent's high-water mark through ``execve`` (the pre-exec copy of the parent's
                    address space counts), so a parent holding 2 GiB makes every child report at least 2 GiB.

Sides are run A B A B ... (:func:`interleaved`), so load on the shared machine drifts across both sides alike.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

Task = Callable[..., dict[str, Any]]

_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_MEASURE: dict[str, float] = {}


def log(message: str) -> None:
    """One progress line on stderr, with the wall clock."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _status_kib(field: str) -> int | None:
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float:
    """Current resident memory of this process (MiB)."""
    kib = _status_kib("VmRSS")
    return (kib or 0) / 1024.0


def peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB) since start or the last :func:`start_measuring`."""
    kib = _status_kib("VmHWM")
    if kib is None:  # not Linux: the rusage peak (KiB on Linux, bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024.0**2 if sys.platform == "darwin" else peak / 1024.0
    return kib / 1024.0


def start_measuring() -> float:
    """Reset the peak-memory mark and note the baseline; returns ``time.perf_counter()`` to time the work from."""
    try:
        _CLEAR_REFS.write_text("5")  # Linux >= 4.0: resets VmHWM to the current RSS
        _MEASURE["peak_reset"] = 1.0
    except OSError:
        _MEASURE["peak_reset"] = 0.0
    _MEASURE["baseline_rss_mib"] = rss_mib()
    return time.perf_counter()


def _child_main(task: Task, kwargs: Mapping[str, Any], conn: Connection) -> None:
    try:
        result = dict(task(**kwargs))
        result["peak_rss_mib"] = peak_rss_mib()
        result["baseline_rss_mib"] = _MEASURE.get("baseline_rss_mib", float("nan"))
        result["peak_reset"] = bool(_MEASURE.get("peak_reset", 0.0))
        result["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        result["ok"] = True
        conn.send(result)
    except BaseException as err:  # report every failure (MemoryError, MedsegError...) to the parent
        conn.send({"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})
    finally:
        conn.close()


def _child_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


def _wait(receiver: Connection, pid: int, timeout_s: float, memory_cap_mib: float | None) -> str | None:
    """Wait for the child's result: ``None`` when it is ready (or the child ended), else why it was given up on
    (``"timeout"``, ``"memory"``)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return "timeout"
        if receiver.poll(min(left, 0.1) if memory_cap_mib is not None else left):
            return None
        if memory_cap_mib is not None and (_child_rss_mib(pid) or 0.0) > memory_cap_mib:
            return "memory"


def run_fresh(
    task: Task, kwargs: Mapping[str, Any] | None = None, timeout_s: float = 900.0, memory_cap_mib: float | None = None
) -> dict[str, Any]:
    """Run ``task(**kwargs)`` in a new spawned interpreter and return its result dict (see the module docstring).

    Never raises for a failing task: the result then has ``ok: False`` and ``error`` (an exception's message, a
    timeout, the exit signal of a process the kernel killed, e.g. for memory, or, with ``memory_cap_mib``, a
    resident memory past the cap, polled every 0.1 s: the child is killed and ``memory_cap_exceeded`` is set).
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(task, dict(kwargs or {}), sender), daemon=False)
    started = time.perf_counter()
    process.start()
    sender.close()
    result: dict[str, Any]
    try:
        stopped = _wait(receiver, int(process.pid or 0), timeout_s, memory_cap_mib)
        if stopped is None:
            result = receiver.recv()
        elif stopped == "memory":
            process.kill()
            result = {
                "ok": False,
                "error": f"out of memory: resident memory passed the cap of {memory_cap_mib:.0f} MiB",
                "memory_cap_exceeded": True,
            }
        else:
            process.kill()
            result = {"ok": False, "error": f"timed out after {timeout_s:.0f} s"}
    except EOFError:
        process.join(10)
        result = {"ok": False, "error": f"the process died (exit code {process.exitcode}; -9 is the OOM killer)"}
    finally:
        receiver.close()
    process.join(30)
    if process.is_alive():
        process.kill()
        process.join()
    result["process_seconds"] = time.perf_counter() - started
    return result


def outcome(result: Mapping[str, Any]) -> str:
    """One run's result for the log: ``"1.23 s, peak 456 MiB"``, or its error."""
    if not result["ok"]:
        return str(result["error"])
    return f"{result['seconds']:.2f} s, peak {result['peak_rss_mib']:.0f} MiB"


def interleaved(
    sides: Mapping[str, tuple[Task, Mapping[str, Any]]],
    repetitions: int,
    timeout_s: float = 900.0,
    label: str = "",
) -> dict[str, list[dict[str, Any]]]:
    """Run every side ``repetitions`` times, alternating A B A B ..., each run in a fresh process.

    Returns:
        ``{side: [result of repetition 0, 1, ...]}`` (each a :func:`run_fresh` result with ``repetition`` added).
    """
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for repetition in range(repetitions):
        for name, (task, kwargs) in sides.items():
            result = run_fresh(task, kwargs, timeout_s)
            result["repetition"] = repetition
            runs[name].append(result)
            log(f"{label} {name} #{repetition + 1}/{repetitions}: {outcome(result)}")
    return runs


def median_of(runs: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """Median of ``key`` over the successful runs; ``None`` when none succeeded."""
    values = [float(run[key]) for run in runs if run.get("ok") and run.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(runs: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("seconds", "peak_rss_mib")) -> dict[str, Any]:
    """Median, min, max and the values of each key over the successful runs, plus the errors of the failed ones."""
    summary: dict[str, Any] = {"runs": len(runs), "ok": sum(1 for run in runs if run.get("ok"))}
    for key in keys:
        values = [float(run[key]) for run in runs if run.get("ok") and run.get(key) is not None]
        summary[key] = (
            {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}
            if values
            else None
        )
    errors = [str(run.get("error")) for run in runs if not run.get("ok")]
    if errors:
        summary["errors"] = errors
    return summary


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, ``None`` when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (``uptime``)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []
