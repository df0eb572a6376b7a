"""Run every benchmark on this machine in one go and write ``benchmarks/results/<machine>.json`` and ``.md``.

    .venv/bin/python -m benchmarks.run            # full run (about 20 minutes on 2 cores)
    .venv/bin/python -m benchmarks.run --quick    # tiny sizes, 1 repetition: smoke test and CI
    .venv/bin/python -m benchmarks.run --only end_to_end,network
    .venv/bin/python -m benchmarks.run --only floor,large_scan,batch [--quick]   # issue 13's throughput rows

See ``benchmarks/README.md`` for what each benchmark measures and how peak memory is computed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import load_average, log, run_fresh
from benchmarks.machine import fp32_peak, machine_info, machine_name
from medseg.config import REPO_ROOT, data_root
from medseg.io.files import atomic_path

SECTIONS = ("end_to_end", "inversion", "network", "ingestion", "training", "scaling", "floor", "large_scan", "batch")
DEFAULT_BUNDLE = "bundles/ct_unet"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
# The synthetic scan of quick mode, and of the sections that can run without data when there is none.
SMALL_SYNTHETIC = (96, 96, 48)


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run mode."""

    repetitions: int
    e2e_synthetic: tuple[int, int, int] | None  # quick mode's end-to-end workload (no data needed)
    network_repetitions: int
    ingestion_reads: int
    training: dict[str, Any]
    scaling_sizes: tuple[tuple[int, int, int], ...]
    large_slices: int = 1000  # the large scan's slices (the chest CT stacked; quick: the small phantom stacked)
    batch_cases: int = 10


FULL = Plan(
    repetitions=3,
    e2e_synthetic=None,
    network_repetitions=3,
    ingestion_reads=5,
    # 24 cases = 12 iterations per epoch: the 10 measured ones stay inside one epoch, as in a real run (85 per
    # epoch), instead of timing the data-loader workers' restart at every epoch boundary
    training={"max_cases": 24, "patch": 64, "warmup": 2, "iterations": 8, "repetitions": 2},
    scaling_sizes=((128, 128, 128), (256, 256, 256), (512, 512, 256), (512, 512, 512), (512, 512, 1000)),
)
QUICK = Plan(
    repetitions=1,
    e2e_synthetic=SMALL_SYNTHETIC,
    network_repetitions=1,
    ingestion_reads=1,
    training={"max_cases": 2, "patch": 32, "warmup": 1, "iterations": 1, "repetitions": 1, "num_workers": 0},
    scaling_sizes=((64, 64, 32), (96, 96, 48)),
    large_slices=120,
)


def choose_weights(bundle: str, work_dir: Path) -> dict[str, Any]:
    """The bundle's ``models/model.pt``, else the benchmark checkpoint (:mod:`benchmarks.checkpoint`), else a
    fixed-seed random initialisation (made in a child process)."""
    from benchmarks.checkpoint import benchmark_checkpoint
    from benchmarks.end_to_end import weights_task

    trained = REPO_ROOT / bundle / "models" / "model.pt"
    if trained.is_file():
        from medseg.model_spec import find_model_config

        config_path = find_model_config(trained)
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path else {}
        return {
            "model_file": str(trained),
            "kind": "bundle",
            "model_config": config,
            "description": (
                f"the bundle's shipped models/model.pt ({config.get('network')}, window "
                f"{'x'.join(map(str, config.get('patch_size', [])))}, spacing {config.get('spacing')} mm, "
                f"trained on {config.get('dataset_name')}; see bundles/ct_unet/models/README.md)"
            ),
        }
    found = benchmark_checkpoint()
    if found is not None:
        path, sidecar = found
        return {
            "model_file": str(path),
            "kind": "benchmark_checkpoint",
            "description": (
                f"benchmark checkpoint {path.parent.name}/{path.name} (the bundle has no models/model.pt): the "
                f"bundle's own training workflow, {sidecar.get('epochs')} epochs on "
                f"{sidecar.get('patch_size_trained')} "
                f"patches, best validation mean Dice {sidecar.get('best_val_mean_dice')}, inference window of the "
                "bundle's default; a fixture for the agreement check, not a usable model"
            ),
            "training": sidecar,
        }
    result = run_fresh(weights_task, {"bundle": bundle, "output_dir": str(work_dir / "random-weights")})
    if not result["ok"]:
        raise RuntimeError(f"cannot make benchmark weights: {result['error']}")
    return {
        "model_file": result["model_file"],
        "kind": "random",
        "description": result["weights"] + ": agreement Dice on a random network says little (near-tied logits)",
    }


def _run_sections(args: argparse.Namespace, plan: Plan, weights: dict[str, Any], work_dir: Path) -> tuple[dict, dict]:
    from benchmarks import workloads

    sections: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    have_data = data_root(required=False) is not None
    model_file = weights["model_file"]
    wanted = args.only or SECTIONS
    if "end_to_end" in wanted:
        from benchmarks.end_to_end import run_end_to_end

        in_domain: list[str] = []
        truths: dict[str, str] = {}
        if plan.e2e_synthetic:
            e2e = {
                "synthetic_" + "x".join(map(str, plan.e2e_synthetic)): str(workloads.synthetic_ct(plan.e2e_synthetic))
            }
        elif have_data:
            from medseg.datasets.manifest import load_manifest

            openkbp_image, openkbp_label = workloads.openkbp_case()
            case_id = openkbp_image.name.split(".")[0]
            openkbp_name = "openkbp_" + case_id
            e2e = {openkbp_name: str(openkbp_image), "lung1_1mm": str(workloads.lung1_1mm())}
            truths = {openkbp_name: str(openkbp_label)}
            in_domain = [openkbp_name]  # a head-and-neck model: the chest CT is outside its domain
            dataset = load_manifest().dataset("openkbp")
            weights["e2e_case"] = {
                "case_id": case_id,
                "manifest_split": next((c.split for c in dataset.cases if c.case_id == case_id), None),
                "in_fold0_training": dataset.folds is not None and case_id in dataset.folds.folds[0].train,
            }
        else:
            e2e = {}
            skipped["end_to_end"] = "no data root (set MEDSEG_DATA)"
        if e2e:
            sections["end_to_end"] = run_end_to_end(
                e2e, model_file, work_dir, plan.repetitions, args.bundle, in_domain=in_domain, truths=truths
            )
    if "inversion" in wanted:
        from benchmarks.inversion import run_inversion

        image = (
            str(workloads.synthetic_ct(SMALL_SYNTHETIC))
            if plan.e2e_synthetic or not have_data
            else str(workloads.lung1_1mm())
        )
        sections["inversion"] = run_inversion(image, model_file, args.bundle, work_dir, plan.repetitions)
    if "network" in wanted:
        from benchmarks.network import network_task

        image = (
            str(workloads.synthetic_ct(SMALL_SYNTHETIC))
            if plan.e2e_synthetic or not have_data
            else str(workloads.openkbp_case()[0])
        )
        kwargs = {
            "image": image,
            "model_file": model_file,
            "bundle": args.bundle,
            "repetitions": plan.network_repetitions,
            "quick": args.quick,
        }
        log("network efficiency: levers ...")
        sections["network"] = run_fresh(network_task, kwargs, timeout_s=1800)
        sections["network"]["input"] = image
    if "ingestion" in wanted:
        if have_data:
            from benchmarks.ingestion import run_ingestion

            sections["ingestion"] = run_ingestion(workloads.dicom_series(), plan.repetitions, plan.ingestion_reads)
        else:
            skipped["ingestion"] = "no data root (set MEDSEG_DATA)"
    if "training" in wanted:
        if have_data:
            from benchmarks.training import run_training

            sections["training"] = run_training(**plan.training)
        else:
            skipped["training"] = "no data root (set MEDSEG_DATA)"
    if "floor" in wanted:
        from benchmarks.throughput import run_floor

        if plan.e2e_synthetic or not have_data:
            floor_inputs = {"synthetic_" + "x".join(map(str, SMALL_SYNTHETIC)): workloads.synthetic_ct(SMALL_SYNTHETIC)}
        else:
            openkbp = workloads.openkbp_case()[0]
            floor_inputs = {"openkbp_" + openkbp.name.split(".")[0]: openkbp, "lung1_1mm": workloads.lung1_1mm()}
        sections["floor"] = run_floor(
            {name: str(path) for name, path in floor_inputs.items()},
            model_file,
            work_dir,
            plan.repetitions,
            args.bundle,
        )
    if "large_scan" in wanted:
        from benchmarks.throughput import REFERENCE_MEMORY_CAP_MIB, run_floor

        source = (
            workloads.synthetic_ct(SMALL_SYNTHETIC) if plan.e2e_synthetic or not have_data else workloads.lung1_1mm()
        )
        large = workloads.stacked_ct(source, plan.large_slices)
        sections["large_scan"] = run_floor(
            {large.name.split(".")[0]: str(large)},
            model_file,
            work_dir,
            plan.repetitions,
            args.bundle,
            reference_memory_cap_mib=REFERENCE_MEMORY_CAP_MIB,
        )
    if "batch" in wanted:
        from benchmarks.throughput import run_batch

        cases = workloads.batch_cases(plan.batch_cases, quick=bool(plan.e2e_synthetic))
        sections["batch"] = run_batch(
            [str(path) for path in cases], model_file, work_dir, plan.repetitions, args.bundle
        )
    if "scaling" in wanted:
        from benchmarks.scaling import run_scaling

        volumes = {"x".join(map(str, size)): workloads.synthetic_ct(size) for size in plan.scaling_sizes}
        sections["scaling"] = run_scaling(volumes, model_file, work_dir, args.bundle)
    return sections, skipped


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repetition (smoke test, CI)")
    parser.add_argument(
        "--only",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        help=f"comma list of sections to run: {', '.join(SECTIONS)}",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder (default benchmarks/results)")
    parser.add_argument("--machine", help="name of the results files (default: CPU model and core count)")
    parser.add_argument("--bundle", default=DEFAULT_BUNDLE, help="bundle folder (default bundles/ct_unet)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only or ()) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    plan = QUICK if args.quick else FULL
    info = machine_info()
    name = args.machine or machine_name(info) + ("-quick" if args.quick else "")
    log(
        f"benchmarks ({'quick' if args.quick else 'full'}) on {info['cpu_model']}, load {info['load_average_at_start']}"
    )
    with tempfile.TemporaryDirectory(prefix="medseg-bench-") as tmp:
        work_dir = Path(tmp)
        weights = choose_weights(args.bundle, work_dir)
        log(f"weights: {weights['description']}")
        sections, skipped = _run_sections(args, plan, weights, work_dir)
    network = sections.get("network", {})
    results = {
        "machine_name": name,
        "command": "python -m benchmarks.run " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "mode": "quick" if args.quick else "full",
        "repetitions": plan.repetitions,
        "machine": info,
        "peak": fp32_peak(info, network.get("sgemm_gflops") if network.get("ok") else None),
        "weights": weights,
        "sections": sections,
        "skipped": skipped,
        "load_average_at_end": load_average(),
        "total_seconds": time.perf_counter() - started,
    }
    write_results(results, args.out, name)
    log(f"wrote {args.out / (name + '.json')} and .md in {results['total_seconds']:.0f} s")
    return 0


def write_results(results: dict[str, Any], out_dir: Path, name: str) -> tuple[Path, Path]:
    """``<name>.json``, ``<name>.md`` and (with a scaling section) ``scaling.png`` / ``<name>-scaling.png``."""
    from benchmarks.report import render_markdown
    from benchmarks.scaling import plot_scaling

    out_dir.mkdir(parents=True, exist_ok=True)
    png_name = None
    if "scaling" in results["sections"]:
        png_name = "scaling.png" if results["mode"] == "full" else f"{name}-scaling.png"
        if plot_scaling(results["sections"]["scaling"], out_dir / png_name) is None:
            png_name = None
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    with atomic_path(md_path) as tmp:
        tmp.write_text(render_markdown(results, png_name), encoding="utf-8")
    return json_path, md_path


if __name__ == "__main__":
    sys.exit(main())
