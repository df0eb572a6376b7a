"""End-to-end inference: ``medseg segment`` (the batch job's per-case path) against the stock-MONAI reference
(:mod:`benchmarks.reference`), same network weights, same input file, each repetition in fresh processes.

medseg side: :class:`medseg.inference.Segmenter` loaded once (setup), then one case through
``BatchSegmenter.run_case`` (read, preprocess, sliding window, slab-wise inversion, postprocessing, volumes, QA
flags, the NIfTI label map and the case manifest) is timed. The output formats are limited to the NIfTI label map,
the one file the reference writes. Reference side: network and transforms set up, then one case timed.

Agreement: per organ Dice of the medseg mask against the reference mask (:func:`agreement_task`), after checking
that both lie on the scan's grid.

Where the CPU has bfloat16 instructions (``avx512_bf16`` or ``amx_bf16``, :func:`bf16_support_task`), a third side
runs: ``medseg segment --precision bf16`` (channels-last network under bfloat16 autocast), interleaved with the other
two, with its own speedup against the reference and its Dice against the fp32 medseg mask.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from benchmarks.harness import log, median_of, outcome, ratio, run_fresh, start_measuring, summarize
from benchmarks.reference import reference_task

DEFAULT_BUNDLE = "bundles/ct_unet"
RANDOM_SEED = 0
# Targets of the benchmark (medseg relative to the reference).
TARGET_SPEEDUP = 8.0
TARGET_MEMORY_RATIO = 0.25
TARGET_AGREEMENT_DICE = 0.99


def weights_task(bundle: str, output_dir: str, seed: int = RANDOM_SEED) -> dict[str, Any]:
    """Harness task: the bundle's trained ``models/model.pt`` when it exists, else a fixed-seed random
    initialisation of the bundle's default network saved as a model folder in ``output_dir`` (``model.pt`` +
    ``model_config.json`` with the training defaults). Returns which one in ``weights``."""
    import tempfile

    import torch

    from benchmarks.checkpoint import default_run_config, write_model_folder
    from benchmarks.reference import bundle_parser

    parser = bundle_parser(bundle)
    trained = Path(str(parser["bundle_root"])) / "models" / "model.pt"
    if trained.is_file():
        return {"seconds": 0.0, "model_file": str(trained), "weights": "trained (bundle models/model.pt)"}
    torch.manual_seed(seed)
    network = parser.get_parsed_content("network_def", instantiate=True)
    parameters = sum(p.numel() for p in network.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "model.pt"
        torch.save(network.state_dict(), weights)
        note = {"note": f"random initialisation, torch.manual_seed({seed})", "parameters": parameters}
        model_file = write_model_folder(Path(output_dir), weights, default_run_config(bundle), note)
    return {
        "seconds": 0.0,
        "model_file": str(model_file),
        "weights": f"random initialisation, torch.manual_seed({seed}) (no trained models/model.pt in the bundle)",
        "parameters": parameters,
    }


def medseg_task(
    image: str,
    output_dir: str,
    model_file: str,
    bundle: str = DEFAULT_BUNDLE,
    overrides: Mapping[str, Any] | None = None,
    postprocess: bool = True,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Harness task: load the bundle once (setup), then time one case of the batch job at ``precision``."""
    from medseg.inference import Segmenter, discover_cases
    from medseg.inference.batch import BatchSegmenter

    tick = time.perf_counter()
    segmenter = Segmenter(
        bundle,
        device="cpu",
        model_file=model_file,
        progress=False,
        postprocess=postprocess,
        overrides=overrides,
        precision="bf16" if precision == "bf16" else "fp32",
    )
    batch = BatchSegmenter(
        segmenter, Path(output_dir), formats=("nifti",), overwrite=True, progress=False, echo=lambda line: None
    )
    (case,) = discover_cases(image)
    setup_seconds = time.perf_counter() - tick
    start = start_measuring()
    record = batch.run_case(case)
    seconds = time.perf_counter() - start
    if record.status != "ok":
        raise RuntimeError(f"medseg failed on {image}: {record.error}")
    return {
        "seconds": seconds,
        "setup_seconds": setup_seconds,
        "stages": dict(record.seconds),
        "mask": str(Path(output_dir) / record.outputs[0]),
        "size": list(record.size or []),
        "volumes_ml": dict(record.volumes_ml),
        "peak_memory_mb_medseg_record": record.peak_memory_mb,
    }


def bf16_support_task() -> dict[str, Any]:
    """Harness task: whether this CPU runs bfloat16 in hardware (:func:`medseg.networks.factory.supports_bf16`;
    in a child, so the parent process never imports torch)."""
    from medseg.networks.factory import CPU_BF16_FLAGS, supports_bf16

    return {"seconds": 0.0, "supported": supports_bf16("cpu"), "flags": list(CPU_BF16_FLAGS)}


def agreement_task(
    reference_mask: str, medseg_mask: str, label_names: Mapping[int, str], truth_mask: str | None = None
) -> dict[str, Any]:
    """Harness task: per-organ Dice of the medseg mask against the reference mask, and their grids; with
    ``truth_mask`` (the case's manual label map, same grid) also each side's Dice against it.

    Dice from one confusion count (:func:`benchmarks.agreement.dice_per_label`; the same values as
    :func:`medseg.evaluation.compare_label_maps`, without its surface distances, which take minutes on the
    body-sized blobs of an untrained network at 512 x 512 x 236)."""
    import numpy as np
    import SimpleITK as sitk

    from benchmarks.agreement import dice_per_label

    reference = sitk.ReadImage(reference_mask)
    ours = sitk.ReadImage(medseg_mask)
    start = start_measuring()
    grid = {
        "size_equal": reference.GetSize() == ours.GetSize(),
        "max_spacing_diff_mm": float(np.max(np.abs(np.subtract(reference.GetSpacing(), ours.GetSpacing())))),
        "max_origin_diff_mm": float(np.max(np.abs(np.subtract(reference.GetOrigin(), ours.GetOrigin())))),
        "max_direction_diff": float(np.max(np.abs(np.subtract(reference.GetDirection(), ours.GetDirection())))),
        "size": list(ours.GetSize()),
    }
    if not grid["size_equal"]:
        return {"seconds": time.perf_counter() - start, "grid": grid, "organs": {}}
    ref_array = np.rint(sitk.GetArrayViewFromImage(reference)).astype(np.uint8)
    our_array = sitk.GetArrayViewFromImage(ours).astype(np.uint8)
    voxel_ml = float(np.prod(ours.GetSpacing())) / 1000.0
    dice = dice_per_label(our_array, ref_array, [int(k) for k in label_names])
    ours_counts = np.bincount(our_array.ravel(), minlength=256)
    ref_counts = np.bincount(ref_array.ravel(), minlength=256)
    organs = {
        label_names[label]: {
            "dice": None if value is None else round(value, 4),
            "volume_medseg_ml": round(float(ours_counts[label]) * voxel_ml, 2),
            "volume_reference_ml": round(float(ref_counts[label]) * voxel_ml, 2),
        }
        for label, value in dice.items()
    }
    if truth_mask is not None:
        truth = sitk.GetArrayFromImage(sitk.ReadImage(truth_mask)).astype(np.uint8)
        if truth.shape == our_array.shape:
            labels = [int(k) for k in label_names]
            for side, array in (("medseg", our_array), ("reference", ref_array)):
                for label, value in dice_per_label(array, truth, labels).items():
                    organs[label_names[label]][f"dice_{side}_vs_truth"] = None if value is None else round(value, 4)
    return {
        "seconds": time.perf_counter() - start,
        "grid": grid,
        "organs": organs,
        "identical_voxel_fraction": float(np.mean(ref_array == our_array)),
    }


def _label_names(bundle: str) -> dict[int, str]:
    from medseg.inference.bundle import label_names_from_metadata, read_metadata, resolve_bundle

    bundle_dir = resolve_bundle(bundle)
    return label_names_from_metadata(read_metadata(bundle_dir), bundle_dir)


def run_end_to_end(
    workloads: Mapping[str, str],
    model_file: str,
    work_dir: Path,
    repetitions: int,
    bundle: str = DEFAULT_BUNDLE,
    keep_outputs: bool = False,
    timeout_s: float = 900.0,
    in_domain: Collection[str] = (),
    truths: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Both sides on every workload, interleaved; the agreement of the first repetition's masks. With bfloat16
    hardware also a third side, ``medseg_bf16`` (``--precision bf16``), scored against the fp32 medseg mask.

    ``in_domain`` names the workloads the model was trained for (head-and-neck CT): only there is the agreement
    target judged; elsewhere (a chest CT, a phantom) the network's output is noise and the agreement is reported
    for the record. ``truths``: workload -> manual label map on the scan's grid, to score both sides against it.

    Returns:
        ``{workload: {"input", "medseg", "reference", "speedup", "memory_ratio", "agreement", "targets_met"}}``,
        plus ``"medseg_bf16"`` (its runs' summary) and ``"bf16"`` (:func:`_bf16_comparison`) where the CPU has
        bfloat16 instructions.
    """
    label_names = _label_names(bundle)
    support = run_fresh(bf16_support_task, {}, timeout_s)
    with_bf16 = bool(support.get("ok") and support.get("supported"))
    log(
        "e2e: bfloat16 side "
        + ("on" if with_bf16 else f"off ({support.get('error') or 'no avx512_bf16 or amx_bf16 on this CPU'})")
    )
    sides: list[tuple[str, Any, dict[str, Any]]] = [("medseg", medseg_task, {}), ("reference", reference_task, {})]
    if with_bf16:
        sides.append(("medseg_bf16", medseg_task, {"precision": "bf16"}))
    results: dict[str, Any] = {}
    for name, image in workloads.items():
        folder = work_dir / "end_to_end" / name
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side, _, _ in sides}
        for repetition in range(repetitions):  # A B C A B C ...: load drifts hit every side alike
            for side, task, extra in sides:
                out = folder / f"{side}-{repetition}"
                shutil.rmtree(out, ignore_errors=True)
                kwargs = {"image": image, "output_dir": str(out), "model_file": model_file, "bundle": bundle, **extra}
                result = run_fresh(task, kwargs, timeout_s)
                result["repetition"] = repetition
                runs[side].append(result)
                log(f"e2e {name} {side} #{repetition + 1}/{repetitions}: {outcome(result)}")
        agreement: dict[str, Any] | None = None
        first_ok = [next((r for r in runs[s] if r.get("ok")), None) for s in ("reference", "medseg")]
        if first_ok[0] is not None and first_ok[1] is not None:
            agreement = run_fresh(
                agreement_task,
                {
                    "reference_mask": first_ok[0]["mask"],
                    "medseg_mask": first_ok[1]["mask"],
                    "label_names": label_names,
                    "truth_mask": (truths or {}).get(name),
                },
            )
            log(f"e2e {name} agreement: {_agreement_line(agreement)}")
        matched: dict[str, Any] | None = None
        if first_ok[0] is not None:
            matched = _matched_agreement(image, first_ok[0]["mask"], folder, model_file, bundle, label_names, timeout_s)
            log(f"e2e {name} agreement with matched settings: {_agreement_line(matched['agreement'])}")
        bf16_agreement: dict[str, Any] | None = None
        if with_bf16:
            bf16_first = next((r for r in runs["medseg_bf16"] if r.get("ok")), None)
            if first_ok[1] is not None and bf16_first is not None:
                # agreement_task's "medseg" side is the bf16 mask, its "reference" side the fp32 medseg mask.
                bf16_agreement = run_fresh(
                    agreement_task,
                    {
                        "reference_mask": first_ok[1]["mask"],
                        "medseg_mask": bf16_first["mask"],
                        "label_names": label_names,
                    },
                )
                log(f"e2e {name} medseg bf16 vs fp32: {_agreement_line(bf16_agreement)}")
        if not keep_outputs:
            shutil.rmtree(folder, ignore_errors=True)
        results[name] = _comparison(image, runs, agreement, name in in_domain)
        results[name]["matched_settings"] = matched
        if with_bf16:
            results[name]["medseg_bf16"] = _side_summary(runs["medseg_bf16"])
            results[name]["bf16"] = _bf16_comparison(runs, bf16_agreement)
    return results


def _bf16_comparison(runs: Mapping[str, list[dict[str, Any]]], agreement: Mapping[str, Any] | None) -> dict[str, Any]:
    """The bf16 side against the reference (speed, memory) and against fp32 medseg (speed, masks)."""
    bf16_s, bf16_mem = median_of(runs["medseg_bf16"], "seconds"), median_of(runs["medseg_bf16"], "peak_rss_mib")
    dices = (
        [o["dice"] for o in agreement["organs"].values() if o["dice"] is not None]
        if agreement and agreement.get("ok")
        else []
    )
    return {
        "speedup": ratio(median_of(runs["reference"], "seconds"), bf16_s),
        "speedup_vs_medseg_fp32": ratio(median_of(runs["medseg"], "seconds"), bf16_s),
        "memory_ratio": ratio(bf16_mem, median_of(runs["reference"], "peak_rss_mib")),
        # agreement_task(reference_mask=fp32 medseg mask, medseg_mask=bf16 mask): "medseg" there means bf16.
        "agreement_vs_medseg_fp32": dict(agreement) if agreement else None,
        "min_organ_dice_vs_medseg_fp32": min(dices) if dices else None,
    }


def matched_overrides(bundle: str) -> dict[str, Any]:
    """Bundle overrides that give medseg the reference's sliding window: no body crop, constant blending and
    zero padding (overlap 0.5 and sw_batch_size 4 are the bundle's inference values already)."""
    overrides: dict[str, Any] = {"preprocessing#body_crop": False}  # medseg.transforms.preprocessing_chain
    overrides |= {
        "inferer#mode": "constant",
        "inferer#padding_mode": "constant",
        "sw_overlap": 0.5,
        "sw_batch_size": 4,
    }
    return overrides


def _matched_agreement(
    image: str,
    reference_mask: str,
    folder: Path,
    model_file: str,
    bundle: str,
    label_names: Mapping[int, str],
    timeout_s: float,
) -> dict[str, Any]:
    """Agreement of medseg with the reference's window settings and no postprocessing: what remains is the
    inversion (slab-wise trilinear vs Invertd) and, where the model grid is smaller than the window, medseg's
    mirrored padding against the inferer's zero padding."""
    overrides = matched_overrides(bundle)
    kwargs = {
        "image": image,
        "output_dir": str(folder / "medseg-matched"),
        "model_file": model_file,
        "bundle": bundle,
        "overrides": overrides,
        "postprocess": False,
    }
    run = run_fresh(medseg_task, kwargs, timeout_s)
    agreement: dict[str, Any] = {"ok": False, "error": run.get("error")}
    if run["ok"]:
        agreement = run_fresh(
            agreement_task, {"reference_mask": reference_mask, "medseg_mask": run["mask"], "label_names": label_names}
        )
    organs = agreement.get("organs", {}) if agreement.get("ok") else {}
    dices = [o["dice"] for o in organs.values() if o["dice"] is not None]
    return {
        "overrides": overrides,
        "postprocess": False,
        "seconds": run.get("seconds"),
        "peak_rss_mib": run.get("peak_rss_mib"),
        "agreement": agreement,
        "min_organ_dice": min(dices) if dices else None,
    }


def _agreement_line(agreement: Mapping[str, Any]) -> str:
    if not agreement.get("ok"):
        return str(agreement.get("error"))
    dices = [o["dice"] for o in agreement["organs"].values() if o["dice"] is not None]
    return f"min organ Dice {min(dices):.4f}" if dices else "no organ in either mask"


def _comparison(
    image: str, runs: Mapping[str, list[dict[str, Any]]], agreement: Mapping[str, Any] | None, in_domain: bool
) -> dict:
    medseg_s, reference_s = median_of(runs["medseg"], "seconds"), median_of(runs["reference"], "seconds")
    medseg_mem, reference_mem = median_of(runs["medseg"], "peak_rss_mib"), median_of(runs["reference"], "peak_rss_mib")
    speedup = ratio(reference_s, medseg_s)
    memory_ratio = ratio(medseg_mem, reference_mem)
    dices = (
        [o["dice"] for o in agreement["organs"].values() if o["dice"] is not None]
        if agreement and agreement.get("ok")
        else []
    )
    min_dice = min(dices) if dices else None
    return {
        "input": image,
        "medseg": _side_summary(runs["medseg"]),
        "reference": _side_summary(runs["reference"]),
        "speedup": speedup,
        "memory_ratio": memory_ratio,
        "agreement": dict(agreement) if agreement else None,
        "min_organ_dice": min_dice,
        "in_domain": in_domain,
        "targets_met": {
            f"speedup >= {TARGET_SPEEDUP:g}x": None if speedup is None else speedup >= TARGET_SPEEDUP,
            f"peak memory <= {TARGET_MEMORY_RATIO:g}x": None
            if memory_ratio is None
            else memory_ratio <= TARGET_MEMORY_RATIO,
            f"agreement Dice >= {TARGET_AGREEMENT_DICE:g}": None
            if min_dice is None or not in_domain
            else min_dice >= TARGET_AGREEMENT_DICE,
        },
    }


def _side_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary = summarize(runs, ("seconds", "peak_rss_mib", "baseline_rss_mib", "setup_seconds"))
    stage_names = sorted({stage for run in runs if run.get("ok") for stage in run.get("stages", {})})
    summary["stages_median_seconds"] = {
        stage: median_of([dict(run["stages"], ok=True) for run in runs if run.get("ok")], stage)
        for stage in stage_names
    }
    return summary
