"""Throughput against the stock-MONAI chain (:mod:`benchmarks.reference`), same weights, fresh processes:

* **floor** (``--only floor``): the physical floor of a case, reading the scan (:func:`medseg.io.readers.read_scan`)
  and writing a uint8 mask of its grid (NIfTI, gzip as medseg writes it) and nothing else, beside medseg's and the
  stock chain's time for the same scan: how far each side is from the least any tool must do;
* **large_scan** (``--only large_scan``): the same three sides on a 1000-slice scan (the 512 x 512 chest CT stacked,
  :func:`benchmarks.workloads.stacked_ct`), the stock chain under a memory cap (:data:`REFERENCE_MEMORY_CAP_MIB`):
  past it, it is reported as out of memory, with the cap;
* **batch** (``--only batch``): ten cases in one process per side, as a user runs a folder: each case's own
  seconds (the median is "per case in a batch") and the whole process's wall time from spawn to exit (interpreter,
  imports, network, every case).

Each side runs in a fresh process (:func:`benchmarks.harness.run_fresh`); peak memory is the harness's
``VmHWM`` after the set-up.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.end_to_end import DEFAULT_BUNDLE, medseg_task
from benchmarks.floor import floor_task
from benchmarks.harness import log, median_of, outcome, ratio, run_fresh, start_measuring, summarize
from benchmarks.reference import reference_task

# The stock chain's memory cap on the large scan (MiB of resident memory): the machine is shared, and the chain
# needs several times the scan in float64 (a 512 x 512 x 1000 scan: well over 8 GiB).
REFERENCE_MEMORY_CAP_MIB = 8192.0
BATCH_CASES = 10


def run_floor(
    workloads: Mapping[str, str],
    model_file: str,
    work_dir: Path,
    repetitions: int,
    bundle: str = DEFAULT_BUNDLE,
    reference_memory_cap_mib: float | None = None,
    timeout_s: float = 1800.0,
) -> dict[str, Any]:
    """Floor, medseg and the stock chain on every workload, interleaved (F M R F M R ...).

    Returns:
        ``{workload: {"input", "floor", "medseg", "reference", "medseg_over_floor", "reference_over_floor",
        "speedup", "process_speedup", "memory_ratio", "reference_memory_cap_mib"}}``; a side past the cap has ``ok: 0``
        and its error.
    """
    results: dict[str, Any] = {}
    for name, image in workloads.items():
        folder = work_dir / "floor" / name
        runs: dict[str, list[dict[str, Any]]] = {"floor": [], "medseg": [], "reference": []}
        for repetition in range(repetitions):
            for side in runs:
                out = folder / f"{side}-{repetition}"
                shutil.rmtree(out, ignore_errors=True)
                if side == "floor":
                    result = run_fresh(floor_task, {"image": image, "output_dir": str(out)}, timeout_s)
                else:
                    task = medseg_task if side == "medseg" else reference_task
                    kwargs = {"image": image, "output_dir": str(out), "model_file": model_file, "bundle": bundle}
                    cap = reference_memory_cap_mib if side == "reference" else None
                    result = run_fresh(task, kwargs, timeout_s, memory_cap_mib=cap)
                shutil.rmtree(out, ignore_errors=True)
                result["repetition"] = repetition
                runs[side].append(result)
                log(f"floor {name} {side} #{repetition + 1}/{repetitions}: {outcome(result)}")
        shutil.rmtree(folder, ignore_errors=True)
        keys = ("seconds", "peak_rss_mib", "setup_seconds", "process_seconds")
        floor_s = median_of(runs["floor"], "seconds")
        medseg_s, reference_s = median_of(runs["medseg"], "seconds"), median_of(runs["reference"], "seconds")
        results[name] = {
            "input": image,
            **{side: _with_stages(summarize(side_runs, keys), side_runs) for side, side_runs in runs.items()},
            "medseg_over_floor": ratio(medseg_s, floor_s),
            "reference_over_floor": ratio(reference_s, floor_s),
            "speedup": ratio(reference_s, medseg_s),
            # Spawn to exit: interpreter, imports, set-up, the case, as a user running one scan waits for it.
            "process_speedup": ratio(
                median_of(runs["reference"], "process_seconds"), median_of(runs["medseg"], "process_seconds")
            ),
            "memory_ratio": ratio(
                median_of(runs["medseg"], "peak_rss_mib"), median_of(runs["reference"], "peak_rss_mib")
            ),
            "reference_memory_cap_mib": reference_memory_cap_mib,
        }
    return results


def _with_stages(summary: dict[str, Any], runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    stages = sorted({stage for run in runs if run.get("ok") for stage in run.get("stages", {})})
    summary["stages_median_seconds"] = {
        stage: median_of([dict(run["stages"], ok=True) for run in runs if run.get("ok")], stage) for stage in stages
    }
    return summary


def medseg_batch_task(
    images: Sequence[str], output_dir: str, model_file: str, bundle: str, precision: str = "fp32"
) -> dict[str, Any]:
    """Harness task: medseg's batch job over ``images`` in one process at ``precision`` (Segmenter loaded once, each
    case through ``BatchSegmenter.run_case``, the NIfTI label map written); each case's seconds and stages, the
    precision that ran (``auto`` resolved) and the network path chosen."""
    from medseg.inference import Segmenter, discover_cases
    from medseg.inference.batch import BatchSegmenter

    tick = time.perf_counter()
    segmenter = Segmenter(bundle, device="cpu", model_file=model_file, progress=False, precision=precision)
    batch = BatchSegmenter(
        segmenter, Path(output_dir), formats=("nifti",), overwrite=True, progress=False, echo=lambda line: None
    )
    setup_seconds = time.perf_counter() - tick
    start = start_measuring()
    per_case, stages = [], []
    for image in images:
        (case,) = discover_cases(image)
        tick = time.perf_counter()
        record = batch.run_case(case)
        per_case.append(time.perf_counter() - tick)
        if record.status != "ok":
            raise RuntimeError(f"medseg failed on {image}: {record.error}")
        stages.append(dict(record.seconds))
    return {
        "seconds": time.perf_counter() - start,
        "setup_seconds": setup_seconds,
        "per_case_seconds": per_case,
        "per_case_stages": stages,
        "precision": segmenter.precision,
        "network_path": segmenter.network_path.why,
    }


def reference_batch_task(images: Sequence[str], output_dir: str, model_file: str, bundle: str) -> dict[str, Any]:
    """Harness task: the stock chain (:class:`benchmarks.reference.ReferencePipeline`) over ``images`` in one
    process, network and transforms set up once; each case's seconds."""
    from benchmarks.reference import ReferencePipeline, bundle_model_settings, bundle_network, bundle_parser

    tick = time.perf_counter()
    parser = bundle_parser(bundle, model_file)
    settings = bundle_model_settings(parser)
    network = bundle_network(parser, model_file)
    pipeline = ReferencePipeline(network, settings["spacing"], settings["hu_window"], settings["roi_size"], output_dir)
    setup_seconds = time.perf_counter() - tick
    start = start_measuring()
    per_case = []
    for image in images:
        tick = time.perf_counter()
        pipeline(image)
        per_case.append(time.perf_counter() - tick)
    return {"seconds": time.perf_counter() - start, "setup_seconds": setup_seconds, "per_case_seconds": per_case}


def auto_differs_from_fp32() -> bool:
    """Whether medseg's ``--precision auto`` runs something other than fp32 on this CPU (bfloat16 hardware)."""
    from medseg.networks.factory import check_precision

    return check_precision("auto", "cpu") != "fp32"


# The batch's sides: medseg at its default fp32 (the exact path, and the one that holds on a CPU without bfloat16
# hardware, such as the AVX2-only reference machine of issue 13), medseg at ``--precision auto`` (only where it is
# not fp32 here), and the stock chain.
BATCH_SIDES = ("medseg", "medseg_auto", "reference")


def run_batch(
    images: Sequence[str],
    model_file: str,
    work_dir: Path,
    repetitions: int,
    bundle: str = DEFAULT_BUNDLE,
    timeout_s: float = 3600.0,
    with_auto: bool | None = None,
) -> dict[str, Any]:
    """All sides over the same ``images`` (one process per side and repetition, interleaved): median seconds
    per case in the batch, whole-process wall time (spawn to exit), their ratios to the stock chain, and medseg's
    median stage seconds over all cases. ``with_auto``: run the ``medseg_auto`` side (default: where ``auto`` is
    not fp32 on this CPU)."""
    if with_auto is None:
        with_auto = auto_differs_from_fp32()
    sides = [side for side in BATCH_SIDES if with_auto or side != "medseg_auto"]
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for repetition in range(repetitions):
        for side in sides:
            out = work_dir / "batch" / f"{side}-{repetition}"
            shutil.rmtree(out, ignore_errors=True)
            kwargs: dict[str, Any] = {
                "images": list(images),
                "output_dir": str(out),
                "model_file": model_file,
                "bundle": bundle,
            }
            if side == "reference":
                task: Any = reference_batch_task
            else:
                task = medseg_batch_task
                kwargs["precision"] = "auto" if side == "medseg_auto" else "fp32"
            result = run_fresh(task, kwargs, timeout_s)
            shutil.rmtree(out, ignore_errors=True)
            if result["ok"]:
                result["per_case_median_seconds"] = statistics.median(result["per_case_seconds"])
            result["repetition"] = repetition
            runs[side].append(result)
            shown = (
                f"{result['per_case_median_seconds']:.2f} s per case, process {result['process_seconds']:.1f} s, "
                f"peak {result['peak_rss_mib']:.0f} MiB"
                if result["ok"]
                else result["error"]
            )
            log(f"batch of {len(images)} {side} #{repetition + 1}/{repetitions}: {shown}")
    keys = ("per_case_median_seconds", "process_seconds", "seconds", "setup_seconds", "peak_rss_mib")
    summaries = {side: summarize(side_runs, keys) for side, side_runs in runs.items()}
    reference = runs["reference"]
    result: dict[str, Any] = {"cases": len(images), "inputs": list(images), **summaries}
    for side in sides:
        if side == "reference":
            continue
        suffix = "" if side == "medseg" else "_auto"
        done = [run for run in runs[side] if run.get("ok")]
        summaries[side]["precision"] = done[0]["precision"] if done else None
        summaries[side]["network_path"] = done[0]["network_path"] if done else None
        summaries[side]["stages_median_seconds"] = _case_stages(done)
        result[f"per_case_speedup{suffix}"] = ratio(
            median_of(reference, "per_case_median_seconds"), median_of(runs[side], "per_case_median_seconds")
        )
        result[f"process_speedup{suffix}"] = ratio(
            median_of(reference, "process_seconds"), median_of(runs[side], "process_seconds")
        )
        result[f"memory_ratio{suffix}"] = ratio(
            median_of(runs[side], "peak_rss_mib"), median_of(reference, "peak_rss_mib")
        )
    return result


def _case_stages(runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Median seconds per stage over every case of every run."""
    cases = [stages for run in runs for stages in run.get("per_case_stages", [])]
    names = sorted({name for stages in cases for name in stages})
    return {name: statistics.median(stages.get(name, 0.0) for stages in cases) for name in names}
