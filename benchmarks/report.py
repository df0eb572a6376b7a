"""The markdown page of a results JSON (:mod:`benchmarks.run` writes both): every figure comes from the JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _num(value: Any, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value}{suffix}"
    return f"{float(value):.{digits}f}{suffix}"


def _median(summary: Mapping[str, Any] | None, key: str) -> float | None:
    if not summary or not summary.get(key):
        return None
    return float(summary[key]["median"])


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _targets(targets: Mapping[str, bool | None]) -> str:
    return ", ".join(
        f"{name}: {'met' if ok else ('NOT met' if ok is False else 'n/a')}" for name, ok in targets.items()
    )


def _errors(name: str, summary: Mapping[str, Any] | None) -> list[str]:
    if not summary or not summary.get("errors"):
        return []
    return [f"* {name} failed: `{error}`" for error in summary["errors"]]


def _case_note(weights: Mapping[str, Any]) -> str:
    case = weights.get("e2e_case")
    if not case:
        return ""
    return (
        f". The end-to-end OpenKBP case {case['case_id']} is in the dataset's `{case['manifest_split']}` split"
        + (" and in fold 0's training cases" if case.get("in_fold0_training") else "")
        + ": a model trained on those has seen it, so its Dice against the manual contours is optimistic"
    )


def _header(results: Mapping[str, Any]) -> list[str]:
    machine = results["machine"]
    peak = results.get("peak", {})
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    lines = [
        f"# medseg benchmarks: {results['machine_name']}",
        "",
        f"Made by `{results['command']}` on {machine['started']} in {_num(results.get('total_seconds'), 0)} s "
        f"({results['mode']} mode, {results['repetitions']} repetitions per comparison unless stated). "
        "Every figure below is read from the JSON next to this file.",
        "",
        f"* CPU: {machine['cpu_model']} ({machine['vendor']}, family {machine['cpu_family']} model "
        f"{machine['cpu_model_number']}), {machine['physical_cores']} cores, {machine['logical_cpus']} logical CPUs, "
        f"hypervisor {machine.get('hypervisor') or 'none'}, {_num(machine.get('memory_gib'), 1)} GiB RAM",
        f"* SIMD flags: {', '.join(machine['simd_flags'])}; "
        f"clock {_num(peak.get('ghz'), 3)} GHz ({peak.get('clock_source')})",
        f"* fp32 peak: nominal {_num(peak.get('nominal_gflops'), 1)} GFLOP/s ({peak.get('nominal_formula')}); "
        f"datapath {_num(peak.get('datapath_gflops'), 1)} GFLOP/s ({peak.get('datapath_note')}); "
        f"measured SGEMM {_num(peak.get('measured_sgemm_gflops'), 1)} GFLOP/s",
        f"* Software: Python {machine['python']}, {versions}",
        f"* Load average (1, 5, 15 min): {machine['load_average_at_start']} at the start, "
        f"{results.get('load_average_at_end')} at the end (the machine is shared: other jobs ran alongside)",
        f"* Weights: {results['weights']['description']}" + _case_note(results["weights"]),
        "",
    ]
    return lines


def _e2e_row(
    label: str, grid: str, side: Mapping[str, Any], reference: Mapping[str, Any], ratios: Mapping[str, Any]
) -> list[str]:
    """The first columns of an end-to-end table row: one medseg side against the reference."""
    return [
        label,
        grid,
        _num(_median(side, "seconds")),
        _num(_median(reference, "seconds")),
        _num(ratios.get("speedup"), 2, "x"),
        _num(_median(side, "peak_rss_mib"), 0),
        _num(_median(reference, "peak_rss_mib"), 0),
        _num(ratios.get("memory_ratio"), 2, "x"),
    ]


def _end_to_end(section: Mapping[str, Any]) -> list[str]:
    lines = ["## End-to-end inference: `medseg segment` vs a stock-MONAI chain (spleen-bundle style)", ""]
    rows = []
    for name, result in section.items():
        medseg, reference = result["medseg"], result["reference"]
        size = (result.get("agreement") or {}).get("grid", {}).get("size")
        grid = "x".join(str(n) for n in size) if size else "n/a"
        rows.append(
            [
                *_e2e_row(name, grid, medseg, reference, result),
                _num(result.get("min_organ_dice"), 4),
                _targets(result["targets_met"]),
            ]
        )
        bf16 = result.get("bf16")
        if bf16 is not None:
            rows.append(
                [
                    *_e2e_row(f"{name}, medseg bf16", grid, result.get("medseg_bf16") or {}, reference, bf16),
                    _num(bf16.get("min_organ_dice_vs_medseg_fp32"), 4) + " vs medseg fp32",
                    f"{_num(bf16.get('speedup_vs_medseg_fp32'), 2, 'x')} the speed of medseg fp32",
                ]
            )
    lines += _table(
        [
            "workload",
            "size",
            "medseg s",
            "reference s",
            "speedup",
            "medseg peak MiB",
            "reference peak MiB",
            "memory ratio",
            "min organ Dice",
            "targets",
        ],
        rows,
    )
    if any(result.get("bf16") is not None for result in section.values()):
        lines += [
            "The `medseg bf16` rows run `medseg segment --precision bf16` (network in channels_last_3d under "
            "bfloat16 autocast, on this CPU's avx512_bf16/amx_bf16 instructions), interleaved with the other two "
            "sides; their Dice is against the fp32 medseg mask, not the reference.",
            "",
        ]
    lines += ["Median wall seconds per stage (setup = network and transforms, loaded once per batch, not timed):", ""]
    stage_rows = []
    for name, result in section.items():
        for side in ("medseg", "reference", "medseg_bf16"):
            if side not in result:
                continue
            stages = result[side].get("stages_median_seconds", {})
            shown = ", ".join(f"{stage} {_num(seconds)}" for stage, seconds in stages.items())
            shown_side = side.replace("_", " ")
            stage_rows.append([name, shown_side, shown or "n/a", _num(_median(result[side], "baseline_rss_mib"), 0)])
    lines += _table(["workload", "side", "stages (s)", "RSS before the case MiB"], stage_rows)
    for name, result in section.items():
        agreement = result.get("agreement") or {}
        organs = agreement.get("organs") or {}
        if organs and not result.get("in_domain"):
            lines += [
                f"{name} lies outside the model's domain (head-and-neck CT): its masks are noise of an untrained "
                "task, so its agreement is listed for the record and not judged.",
                "",
            ]
        if organs:
            lines += [
                f"Agreement on {name} (medseg mask vs reference mask, same grid: "
                f"{_num(agreement['grid'].get('size_equal'))}; identical voxels "
                f"{_num(agreement.get('identical_voxel_fraction'), 4)}):",
                "",
            ]
            truth = any("dice_medseg_vs_truth" in o for o in organs.values())
            lines += _table(
                ["organ", "Dice medseg vs reference", "medseg mL", "reference mL"]
                + (["medseg vs manual Dice", "reference vs manual Dice"] if truth else []),
                [
                    [organ, _num(o["dice"], 4), _num(o["volume_medseg_ml"], 1), _num(o["volume_reference_ml"], 1)]
                    + (
                        [_num(o.get("dice_medseg_vs_truth"), 4), _num(o.get("dice_reference_vs_truth"), 4)]
                        if truth
                        else []
                    )
                    for organ, o in organs.items()
                ],
            )
        matched = result.get("matched_settings") or {}
        matched_organs = (matched.get("agreement") or {}).get("organs") or {}
        if matched_organs:
            lines += [
                f"Agreement on {name} with medseg run at the reference's window settings (no body crop, constant "
                "blending, zero padding) and without postprocessing, which isolates medseg's inversion: identical "
                f"voxels {_num(matched['agreement'].get('identical_voxel_fraction'), 4)}, per organ Dice "
                + ", ".join(f"{organ} {_num(o['dice'], 4)}" for organ, o in matched_organs.items()),
                "",
            ]
        elif matched:
            lines.append(f"* {name} matched-settings run failed: `{(matched.get('agreement') or {}).get('error')}`")
        bf16_agreement = (result.get("bf16") or {}).get("agreement_vs_medseg_fp32") or {}
        bf16_organs = bf16_agreement.get("organs") or {}
        if bf16_organs:
            lines += [
                f"Agreement on {name} of medseg bf16 with medseg fp32 (same settings otherwise): identical voxels "
                f"{_num(bf16_agreement.get('identical_voxel_fraction'), 4)}, per organ Dice "
                + ", ".join(f"{organ} {_num(o['dice'], 4)}" for organ, o in bf16_organs.items()),
                "",
            ]
        elif bf16_agreement and not bf16_agreement.get("ok", True):
            lines.append(f"* {name} bf16 agreement failed: `{bf16_agreement.get('error')}`")
        lines += _errors(f"{name} medseg", result["medseg"]) + _errors(f"{name} reference", result["reference"])
        if "medseg_bf16" in result:
            lines += _errors(f"{name} medseg bf16", result["medseg_bf16"])
        if agreement and not agreement.get("ok", True):
            lines.append(f"* {name} agreement failed: `{agreement.get('error')}`")
    return [*lines, ""]


def _inversion(section: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Inversion lever: model grid -> scan grid",
        "",
        f"Network output {'x'.join(map(str, section.get('model_shape', [])))} onto the scan grid "
        f"{'x'.join(map(str, section.get('scan_size', [])))} ({section['input']}). `uniform_cells` is medseg's "
        "`labels_on_grid` (the default: interpolates only where the 8 surrounding model voxels disagree); `resampled` "
        "is `labels_on_grid_resampled` (every class at every voxel, the previous default and the reference); "
        '`nearest` is medseg\'s `inversion="nearest"`.',
        "",
    ]
    rows = []
    for method, summary in section["methods"].items():
        rows.append(
            [
                method,
                _num(_median(summary, "seconds")),
                _num(summary.get("speedup_vs_resampled"), 2, "x"),
                _num(_median(summary, "peak_rss_mib"), 0),
                _num(summary.get("identical_fraction"), 6),
                _num(summary.get("min_label_dice"), 4),
            ]
        )
    lines += _table(
        ["method", "s (median)", "speedup", "peak MiB", "identical to resampled", "min label Dice"],
        rows,
    )
    for method, summary in section["methods"].items():
        lines += _errors(method, summary)
    return lines


def _network(section: Mapping[str, Any], peak: Mapping[str, Any]) -> list[str]:
    if not section.get("ok"):
        return ["## Network efficiency", "", f"Failed: `{section.get('error')}`", ""]
    nominal, datapath = peak.get("nominal_gflops"), peak.get("datapath_gflops")
    sgemm = section.get("sgemm_gflops")
    lines = [
        "## Network efficiency inside the sliding-window loop",
        "",
        f"Model-grid volume {'x'.join(map(str, section['model_grid_shape']))} (uncropped "
        f"{'x'.join(map(str, section['uncropped_shape']))}), window {'x'.join(map(str, section['roi_size']))}, "
        f"{_num(section['flops_per_window'] / 1e9, 2)} GFLOP per window (FlopCounterMode), "
        f"{section['threads']} threads, "
        f"SGEMM in the same process {_num(sgemm, 1)} GFLOP/s. Percentages are of the nominal peak "
        f"({_num(nominal, 1)}), the datapath peak ({_num(datapath, 1)}) and the measured SGEMM.",
        "",
    ]
    rows = []
    for row in section["levers"]:
        if row.get("error"):
            rows.append([row["lever"], row["description"], "failed: " + str(row["error"])[:80]] + [""] * 8)
            continue
        gflops = row["network_gflops"]
        rows.append(
            [
                row["lever"],
                row["description"],
                str(row["windows"]),
                _num(row["seconds"]),
                _num(row["speedup_vs_current"], 2, "x"),
                _num(gflops, 1),
                _num(row["loop_gflops"], 1),
                " / ".join(_num(100 * gflops / p, 0, "%") if p else "n/a" for p in (nominal, datapath, sgemm)),
                _num(row.get("identical_fraction"), 4),
                _num(row.get("min_sizable_class_dice"), 4),
                "n/a (medseg already crops)" if row["wins"] is None else ("yes" if row["wins"] else "no"),
            ]
        )
    lines += _table(
        [
            "lever",
            "what",
            "windows",
            "s (median)",
            "speedup",
            "network GFLOP/s",
            "loop GFLOP/s",
            "% of nominal / datapath / SGEMM",
            "identical voxels",
            "min class Dice (>= 50 voxels)",
            "wins",
        ],
        rows,
    )
    share = section.get("profile_share", {})
    lines += [
        "CPU time share per operator family in one window batch (torch.profiler): "
        + ", ".join(f"{family} {_num(100 * value, 0, '%')}" for family, value in share.items()),
        "",
        "A lever 'wins' when it is at least 5 % faster than the current inference and its argmax keeps every class "
        "of at least 50 model-grid voxels at Dice >= 0.99 against the current one. Compile / trace time is in the "
        "JSON (`warmup_seconds`).",
        "",
    ]
    return lines


def _ingestion(section: Mapping[str, Any]) -> list[str]:
    lines = ["## Ingestion: `read_scan` vs SimpleITK ImageSeriesReader alone", ""]
    rows = []
    for name, result in section.items():
        same = result.get("same_volume") or {}
        rows.append(
            [
                name,
                _num(_median(result["medseg"], "seconds"), 3),
                _num(_median(result["simpleitk"], "seconds"), 3),
                _num(result.get("time_ratio"), 2, "x"),
                _num(_median(result["medseg"], "first_seconds"), 3),
                _num(_median(result["simpleitk"], "first_seconds"), 3),
                _num(_median(result["medseg"], "peak_rss_mib"), 0),
                _num(_median(result["simpleitk"], "peak_rss_mib"), 0),
                "yes" if same and all(v for k, v in same.items() if k != "pixel_types") else "NO",
                _targets(result["targets_met"]),
            ]
        )
        lines_errors = _errors(f"{name} medseg", result["medseg"]) + _errors(f"{name} SimpleITK", result["simpleitk"])
        lines += lines_errors
    return lines + _table(
        [
            "series",
            "medseg s",
            "SimpleITK s",
            "ratio",
            "medseg first read s",
            "SimpleITK first read s",
            "medseg peak MiB",
            "SimpleITK peak MiB",
            "same voxels and geometry",
            "target",
        ],
        rows,
    )


def _training(section: Mapping[str, Any]) -> list[str]:
    settings = section["settings"]
    lines = [
        "## Training throughput on the CPU",
        "",
        f"{settings['dataset']}, first {settings['max_cases']} training cases, patch "
        f"{'x'.join(map(str, settings['patch_size']))}, {settings.get('batch', 'n/a')} per iteration, "
        f"{settings['warmup']} warm-up + {settings['iterations']} timed iterations per run.",
        "",
    ]
    rows = [
        [
            side,
            _num(_median(section[key], "samples_per_second"), 3),
            _num(_median(section[key], "seconds_per_iteration"), 2),
            _num(_median(section[key], "data_seconds_per_iteration"), 2),
            _num(_median(section[key], "setup_seconds"), 1),
            _num(_median(section[key], "peak_rss_mib"), 0),
        ]
        for side, key in (
            (
                f"bundle train.json (SupervisedTrainer), default precision: {settings.get('bundle_precision', '?')}",
                "bundle",
            ),
            ("bundle train.json, --precision fp32", "bundle_fp32"),
            ("plain MONAI Dataset + DataLoader (fp32)", "plain_monai"),
        )
        if key in section
    ]
    lines += _table(
        [
            "loop",
            "patches/s",
            "s/iteration",
            "of which waiting for data s",
            "setup s (caching)",
            "peak MiB (main process)",
        ],
        rows,
    )
    lines += [
        f"Bundle / plain throughput: {_num(section.get('throughput_ratio'), 2, 'x')} at the bundle's default "
        f"precision, {_num(section.get('fp32_throughput_ratio'), 2, 'x')} with --precision fp32",
        "",
    ]
    errors = [_errors(side, section[side]) for side in ("bundle", "bundle_fp32", "plain_monai") if side in section]
    return lines + [line for block in errors for line in block] + [""]


def _scaling(section: Mapping[str, Any], png: str | None) -> list[str]:
    lines = ["## Scaling of `medseg segment` with the scan size (synthetic int16 CT, 1 mm)", ""]
    rows = []
    for row in section["rows"]:
        size = "x".join(map(str, row["size"]))
        if not row["ok"]:
            rows.append([size, f"{row['voxels'] / 1e6:.1f}", "failed: " + str(row.get("error"))[:60], "", "", ""])
            continue
        stages = ", ".join(f"{k} {_num(v, 1)}" for k, v in row["stages"].items())
        rows.append(
            [
                size,
                f"{row['voxels'] / 1e6:.1f}",
                _num(row["seconds"], 1),
                _num(row["peak_rss_mib"], 0),
                _num(row["baseline_rss_mib"], 0),
                stages,
            ]
        )
    lines += _table(["size", "Mvoxels", "s", "peak MiB", "RSS before MiB", "stages (s)"], rows)
    lines += [
        f"Log-log slopes over all sizes: time ~ voxels^{_num(section.get('time_exponent'), 2)}, memory above the "
        f"loaded process ~ voxels^{_num(section.get('memory_exponent'), 2)}; over the three largest sizes: time ~ "
        f"voxels^{_num(section.get('time_exponent_largest3'), 2)}, memory ~ "
        f"voxels^{_num(section.get('memory_exponent_largest3'), 2)} (1.00 = linear); "
        f"{_num(section.get('mib_per_megavoxel_at_largest'), 1)} MiB per Mvoxel at the largest size.",
        "",
    ]
    if png:
        lines += [f"![scaling]({png})", ""]
    return lines


def _top_stages(summary: Mapping[str, Any], count: int = 2) -> str:
    stages = summary.get("stages_median_seconds") or {}
    ranked = sorted(((v, k) for k, v in stages.items() if v is not None), reverse=True)[:count]
    return ", ".join(f"{name} {_num(seconds)} s" for seconds, name in ranked) or "n/a"


def _speed_cause(result: Mapping[str, Any]) -> str:
    """Why the end-to-end speedup stops where it does, from the stage medians of both sides."""
    medseg = result["medseg"].get("stages_median_seconds") or {}
    reference = result["reference"].get("stages_median_seconds") or {}
    reference_total = _median(result["reference"], "seconds")
    if not medseg or not reference or reference_total is None:
        return "No stage breakdown to explain it."
    top = max(reference, key=lambda stage: reference[stage] or 0.0)
    shared = sum(medseg.get(stage) or 0.0 for stage in ("read", "preprocess", "inference"))
    bound = reference_total / shared if shared else None
    if top == "inference":
        return (
            f"Both sides are network-bound (reference inference {_num(reference['inference'])} s, medseg "
            f"{_num(medseg.get('inference'))} s): the same network on the same CPU, so only fewer windows (medseg's "
            "body crop) and a faster network (the lever table) widen the gap."
        )
    return (
        f"The reference spends {_num(reference.get('invertd'))} s in Invertd and {_num(reference.get('argmax'))} s in "
        f"the argmax of full-resolution probabilities, which medseg replaces ({_num(medseg.get('invert'))} s); what is "
        f"left of medseg's time is work the reference does too (read + preprocess + network: {_num(shared)} s), so the "
        f"ratio cannot exceed {_num(bound, 1, 'x')} until that shared work gets faster."
    )


def _e2e_verdicts(name: str, result: Mapping[str, Any]) -> list[str]:
    lines = []
    medseg, reference = result["medseg"], result["reference"]
    for target, met in result["targets_met"].items():
        if met is not False:
            continue
        if target.startswith("speedup"):
            lines.append(f"* {name}, {target}: measured {_num(result.get('speedup'), 2, 'x')}. " + _speed_cause(result))
        elif target.startswith("peak memory"):
            baseline, peak = _median(medseg, "baseline_rss_mib"), _median(reference, "peak_rss_mib")
            floor = None if baseline is None or not peak else baseline / peak
            lines.append(
                f"* {name}, {target}: measured {_num(result.get('memory_ratio'), 2, 'x')}. medseg holds "
                f"{_num(baseline, 0)} MiB before the case starts (interpreter, torch, MONAI, network), so the ratio "
                f"cannot fall below {_num(floor, 2, 'x')} of the reference's {_num(peak, 0)} MiB peak for this "
                "scan: on small scans the resident libraries, not the case, set the peak."
            )
        elif target.startswith("agreement"):
            matched = result.get("matched_settings") or {}
            matched_dice = matched.get("min_organ_dice")
            if matched_dice is not None and matched_dice >= 0.99:
                cause = (
                    ": the two pipelines compute the same thing, and the difference comes from medseg's deliberate "
                    "choices (body crop, Gaussian blending, mirrored padding, per-organ cleaning), which change the "
                    "masks as much as the model's margins between classes let them; the Dice of each side against "
                    "the manual contours (agreement table) says which side is closer to the truth."
                )
            else:
                cause = (
                    ": the masks still differ with matched window settings, so part of the difference lies in the "
                    "inversion or the padding of scans smaller than the window (see the inversion table)."
                )
            lines.append(
                f"* {name}, {target}: lowest organ Dice {_num(result.get('min_organ_dice'), 4)}. With the "
                "reference's window settings and no postprocessing medseg's lowest organ Dice is "
                f"{_num(matched_dice, 4)}{cause}"
            )
    return lines


def _network_verdict(section: Mapping[str, Any], peak: Mapping[str, Any]) -> list[str]:
    nominal = peak.get("nominal_gflops")
    rows = [row for row in section.get("levers", []) if not row.get("error") and row.get("judged", True)]
    if not section.get("ok") or not nominal or not rows:
        return []
    best = max(rows, key=lambda row: row["network_gflops"])
    share = best["network_gflops"] / nominal
    if share >= 0.45:
        return []
    sgemm = section.get("sgemm_gflops")
    profile = section.get("profile_share", {})
    return [
        f"* Network, >= 45 % of the nominal fp32 peak: best lever `{best['lever']}` reaches "
        f"{_num(best['network_gflops'], 1)} GFLOP/s = {_num(100 * share, 0, '%')} (current "
        f"{_num(rows[0]['network_gflops'], 1)}). A large fp32 matrix multiply reaches {_num(sgemm, 1)} GFLOP/s = "
        f"{_num(100 * sgemm / nominal if sgemm else None, 0, '%')} of that peak on this CPU, so 45 % is beyond what "
        "its BLAS attains; convolutions take "
        f"{_num(100 * profile.get('convolution', 0), 0, '%')} of the time, InstanceNorm "
        f"{_num(100 * profile.get('instance norm', 0), 0, '%')}, activations "
        f"{_num(100 * profile.get('activation', 0), 0, '%')} (uncounted, memory-bound work)."
    ]


def _verdicts(results: Mapping[str, Any]) -> list[str]:
    """One line per missed target: what was measured and why it fell short, from the measurements."""
    sections = results["sections"]
    lines: list[str] = []
    for name, result in sections.get("end_to_end", {}).items():
        lines += _e2e_verdicts(name, result)
    if "network" in sections:
        lines += _network_verdict(sections["network"], results.get("peak", {}))
    for name, result in sections.get("ingestion", {}).items():
        if any(met is False for met in result["targets_met"].values()):
            medseg_s, sitk_s = _median(result["medseg"], "seconds"), _median(result["simpleitk"], "seconds")
            extra = None if medseg_s is None or sitk_s is None else 1000 * (medseg_s - sitk_s)
            lines.append(
                f"* Ingestion {name}: {_num(result.get('time_ratio'), 2, 'x')} SimpleITK's time, "
                f"{_num(extra, 0)} ms more per read: series discovery (a pydicom header read of every file), slice "
                "ordering and the geometry guard, which SimpleITK alone does not do."
            )
    if not lines:
        return []
    return ["## Targets not met, and why", "", *lines, ""]


def _side_cell(summary: Mapping[str, Any] | None) -> tuple[str, str]:
    """Median seconds and peak MiB of a side, or its error (out of memory under the cap, ...)."""
    if summary and summary.get("ok"):
        return _num(_median(summary, "seconds")), _num(_median(summary, "peak_rss_mib"), 0)
    errors = (summary or {}).get("errors") or ["not run"]
    return str(errors[0]).replace("|", "/"), "n/a"


def _floor(section: Mapping[str, Any], title: str, note: str) -> list[str]:
    """Floor (read + write), medseg and the stock chain side by side, per workload."""
    lines = [f"## {title}", "", note, ""]
    rows = []
    for name, result in section.items():
        floor_s, floor_mem = _side_cell(result.get("floor"))
        medseg_s, medseg_mem = _side_cell(result.get("medseg"))
        ref_s, ref_mem = _side_cell(result.get("reference"))
        stages = (result.get("medseg") or {}).get("stages_median_seconds", {})
        rows.append(
            [
                name,
                floor_s,
                medseg_s,
                ref_s,
                _num(result.get("medseg_over_floor"), suffix="x"),
                _num(result.get("reference_over_floor"), suffix="x"),
                _num(result.get("speedup"), suffix="x"),
                f"{floor_mem} / {medseg_mem} / {ref_mem}",
                _num(result.get("memory_ratio"), suffix="x"),
                f"{_num(_median(result.get('medseg'), 'process_seconds'))} / "
                f"{_num(_median(result.get('reference'), 'process_seconds'))}",
                _num(result.get("process_speedup"), suffix="x"),
                ", ".join(f"{k} {_num(v)}" for k, v in stages.items()),
            ]
        )
    header = [
        "workload",
        "floor s (read + write)",
        "medseg s",
        "stock chain s",
        "medseg / floor",
        "stock / floor",
        "speedup",
        "peak MiB floor / medseg / stock",
        "peak medseg / stock",
        "whole process s medseg / stock",
        "whole-process speedup",
        "medseg stages (s)",
    ]
    lines += _table(header, rows)
    caps = {result.get("reference_memory_cap_mib") for result in section.values()} - {None}
    if caps:
        lines += [f"The stock chain ran under a resident-memory cap of {max(caps):.0f} MiB (killed past it).", ""]
    return lines


def _batch(section: Mapping[str, Any]) -> list[str]:
    """Per case in a batch and whole-process time: medseg at fp32 (and at ``--precision auto`` where that is not
    fp32 here) beside the stock chain."""
    rows = []
    sides = (("medseg", "medseg fp32"), ("medseg_auto", "medseg auto"), ("reference", "stock chain"))
    for side, label in sides:
        if side not in section:
            continue
        summary = section.get(side) or {}
        if side != "reference" and summary.get("precision"):
            label = f"{label} (ran {summary['precision']})"
        if not summary.get("ok"):
            rows.append([label, str((summary.get("errors") or ["not run"])[0]), "", "", "", "", ""])
            continue
        stages = summary.get("stages_median_seconds") or {}
        rows.append(
            [
                label,
                _num(_median(summary, "per_case_median_seconds")),
                _num(_median(summary, "seconds")),
                _num(_median(summary, "process_seconds")),
                _num(_median(summary, "setup_seconds")),
                _num(_median(summary, "peak_rss_mib"), 0),
                ", ".join(f"{k} {_num(v)}" for k, v in stages.items()) or "n/a",
            ]
        )
    lines = [
        f"## A batch of {section.get('cases')} cases in one process",
        "",
        "Each side segments the same cases in one fresh process (network and transforms loaded once): the median of "
        "the cases' own seconds, all cases together, and the whole process from spawn to exit (interpreter, imports, "
        "set-up, every case). medseg runs at its default fp32 (exact; what a CPU without bfloat16 hardware runs) and, "
        "where this CPU has bfloat16 hardware, also at `--precision auto`.",
        "",
    ]
    header = ["side", "per case s (median)", "all cases s", "whole process s", "set-up s", "peak MiB", "stages (s)"]
    lines += _table(header, rows)
    lines += [
        f"medseg fp32 per case: {_num(section.get('per_case_speedup'), suffix='x')} the stock chain's speed; whole "
        f"process: {_num(section.get('process_speedup'), suffix='x')}; peak memory "
        f"{_num(section.get('memory_ratio'), suffix='x')}.",
    ]
    if "medseg_auto" in section:
        lines += [
            f"medseg auto per case: {_num(section.get('per_case_speedup_auto'), suffix='x')}; whole process: "
            f"{_num(section.get('process_speedup_auto'), suffix='x')}; peak memory "
            f"{_num(section.get('memory_ratio_auto'), suffix='x')}.",
        ]
    return [*lines, ""]


def render_markdown(results: Mapping[str, Any], scaling_png: str | None = None) -> str:
    """The markdown page for ``results`` (the dict :mod:`benchmarks.run` writes as JSON)."""
    lines = _header(results)
    sections = results["sections"]
    for name, why in results.get("skipped", {}).items():
        lines += [f"* Skipped {name}: {why}"]
    if results.get("skipped"):
        lines.append("")
    lines += _verdicts(results)
    if "end_to_end" in sections:
        lines += _end_to_end(sections["end_to_end"])
    if "inversion" in sections:
        lines += _inversion(sections["inversion"])
    if "network" in sections:
        lines += _network(sections["network"], results.get("peak", {}))
    if "ingestion" in sections:
        lines += _ingestion(sections["ingestion"])
    if "training" in sections:
        lines += _training(sections["training"])
    if "floor" in sections:
        note = (
            "The physical floor: reading the scan and writing a uint8 mask on its grid, nothing else (fresh process, "
            "timed after the imports); medseg and the stock chain on the same scans, interleaved."
        )
        lines += _floor(sections["floor"], "Physical floor: read + write alone, beside both pipelines", note)
    if "large_scan" in sections:
        note = "The 512 x 512 chest CT at 1 mm stacked along its slices (benchmarks.workloads.stacked_ct)."
        lines += _floor(sections["large_scan"], "Large scan", note)
    if "batch" in sections:
        lines += _batch(sections["batch"])
    if "scaling" in sections:
        lines += _scaling(sections["scaling"], scaling_png)
    return "\n".join(lines).rstrip() + "\n"
