"""Evaluate predicted label maps against references in physical space and write the tables and the plot.

Outputs in ``out``: ``metrics.csv`` (one row per case and label), ``summary.csv`` (one row per label),
``unmatched.csv`` (cases found on one side only) and ``boxplot.png``.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from medseg.errors import InputError
from medseg.evaluation.label_maps import check_same_grid, read_label_map
from medseg.evaluation.metrics import STATUS_BOTH_EMPTY, STATUS_NOT_CONTOURED, LabelMetrics, compare_label_maps
from medseg.evaluation.pairing import CaseMatching, match_cases
from medseg.evaluation.plots import plot_metric_boxes
from medseg.evaluation.summary import OrganSummary, summarize
from medseg.io.files import atomic_path

logger = logging.getLogger(__name__)

METRICS_COLUMNS = (
    "case_id",
    "label_id",
    "label",
    "status",
    "dice",
    "hd95_mm",
    "nsd",
    "nsd_tolerance_mm",
    "volume_pred_ml",
    "volume_ref_ml",
    "pred_file",
    "ref_file",
)
SUMMARY_STATS = ("mean", "median", "ci_low", "ci_high")
SUMMARY_COLUMNS = (
    "label_id",
    "label",
    "n",
    "n_both_empty",
    "n_missing_in_pred",
    "n_missing_in_ref",
    *(f"{metric}_{stat}" for metric in ("dice", "hd95_mm", "nsd") for stat in SUMMARY_STATS),
    "nsd_tolerance_mm",
)


@dataclass
class EvaluationReport:
    """What :func:`evaluate` computed and wrote.

    Attributes:
        results: case id -> one :class:`LabelMetrics` per label of ``label_names`` (``both_empty`` rows included).
        label_names: label id -> name of every label scored.
        unlisted_labels: case id -> labels present in that case's maps but not in the requested label list.
    """

    out_dir: Path
    matching: CaseMatching
    results: dict[str, list[LabelMetrics]]
    label_names: dict[int, str]
    summaries: list[OrganSummary]
    tolerance_mm: float
    unlisted_labels: dict[str, list[int]] = field(default_factory=dict)

    @property
    def metrics_csv(self) -> Path:
        return self.out_dir / "metrics.csv"

    @property
    def summary_csv(self) -> Path:
        return self.out_dir / "summary.csv"

    @property
    def unmatched_csv(self) -> Path:
        return self.out_dir / "unmatched.csv"

    @property
    def boxplot_png(self) -> Path:
        return self.out_dir / "boxplot.png"


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.6g}"


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _labels_present(array: np.ndarray) -> set[int]:
    counts = np.bincount(array.ravel().astype(np.int64) if array.dtype == np.uint64 else array.ravel())
    return set(np.flatnonzero(counts).tolist()) - {0}


def _not_contoured(metrics: LabelMetrics) -> LabelMetrics:
    return replace(metrics, status=STATUS_NOT_CONTOURED, dice=math.nan, hd95_mm=math.nan, nsd=math.nan)


def evaluate(
    pred: str | Path,
    ref: str | Path,
    out: str | Path,
    labels: Mapping[int, str] | None = None,
    tolerance_mm: float = 2.0,
    seed: int = 0,
    contoured: Mapping[str, Collection[int]] | None = None,
) -> EvaluationReport:
    """Score ``pred`` against ``ref`` (two label-map files, or two folders paired by case id as
    :func:`medseg.evaluation.pairing.match_cases` describes) and write the outputs into ``out``.

    Args:
        labels: label id -> name to score; ``None`` scores every non-zero label found in any case, named ``label_N``.
        tolerance_mm: NSD tolerance in mm.
        seed: seed of the bootstrap confidence intervals.
        contoured: case id -> the label ids contoured in that reference (partially contoured data); the other
            labels of a listed case score ``not_contoured`` (NaN, left out of the means). Unlisted cases: all.

    Raises:
        InputError: unreadable or non-label-map files, mismatched grids (size, spacing, origin, direction beyond
            1e-4), nothing to pair, or a negative / non-finite tolerance.
    """
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise InputError(None, f"the NSD tolerance must be a finite number of mm >= 0, got {tolerance_mm}")
    matching = match_cases(pred, ref)
    results: dict[str, list[LabelMetrics]] = {}
    unlisted: dict[str, list[int]] = {}
    for index, pair in enumerate(matching.pairs, start=1):
        logger.info("evaluating %s (%d/%d)", pair.case_id, index, len(matching.pairs))
        pred_map, ref_map = read_label_map(pair.pred), read_label_map(pair.ref)
        check_same_grid(pred_map, ref_map)
        if labels is not None:
            extra = (_labels_present(pred_map.array) | _labels_present(ref_map.array)) - set(labels)
            if extra:
                unlisted[pair.case_id] = sorted(extra)
        results[pair.case_id] = compare_label_maps(
            pred_map.array,
            ref_map.array,
            pred_map.spacing,
            tolerance_mm=tolerance_mm,
            label_ids=None if labels is None else list(labels),
            missing_hd95_mm=ref_map.diagonal_mm,
        )
    if labels is None:
        seen = sorted({metrics.label_id for case in results.values() for metrics in case})
        labels = {label_id: f"label_{label_id}" for label_id in seen}
    label_names = dict(labels)
    for case_id, drawn in (contoured or {}).items():
        if case_id in results:
            results[case_id] = [m if m.label_id in drawn else _not_contoured(m) for m in results[case_id]]
    for case_id, case_metrics in results.items():
        scored = {metrics.label_id for metrics in case_metrics}
        absent = [LabelMetrics(i, STATUS_BOTH_EMPTY, math.nan, math.nan, math.nan, 0.0, 0.0) for i in label_names]
        results[case_id] = sorted(
            case_metrics + [m for m in absent if m.label_id not in scored], key=lambda m: m.label_id
        )

    report = EvaluationReport(
        out_dir=Path(out),
        matching=matching,
        results=results,
        label_names=label_names,
        summaries=summarize(results, label_names, seed=seed),
        tolerance_mm=tolerance_mm,
        unlisted_labels=unlisted,
    )
    _write_outputs(report)
    return report


def _write_outputs(report: EvaluationReport) -> None:
    report.out_dir.mkdir(parents=True, exist_ok=True)
    pairs = {pair.case_id: pair for pair in report.matching.pairs}
    tolerance = _number(report.tolerance_mm)
    metric_rows = [
        (
            case_id,
            m.label_id,
            report.label_names[m.label_id],
            m.status,
            _number(m.dice),
            _number(m.hd95_mm),
            _number(m.nsd),
            tolerance,
            _number(m.volume_pred_ml),
            _number(m.volume_ref_ml),
            str(pairs[case_id].pred),
            str(pairs[case_id].ref),
        )
        for case_id, case_metrics in report.results.items()
        for m in case_metrics
    ]
    _write_csv(report.metrics_csv, METRICS_COLUMNS, metric_rows)
    summary_rows = [
        (
            s.label_id,
            s.label,
            s.n,
            s.n_both_empty,
            s.n_missing_in_pred,
            s.n_missing_in_ref,
            *(_number(getattr(metric, stat)) for metric in (s.dice, s.hd95_mm, s.nsd) for stat in SUMMARY_STATS),
            tolerance,
        )
        for s in report.summaries
    ]
    _write_csv(report.summary_csv, SUMMARY_COLUMNS, summary_rows)
    unmatched_rows = [(case_id, "pred", str(path)) for case_id, path in report.matching.pred_only.items()] + [
        (case_id, "ref", str(path)) for case_id, path in report.matching.ref_only.items()
    ]
    _write_csv(report.unmatched_csv, ("case_id", "only_in", "file"), unmatched_rows)
    plot_metric_boxes(report.results, report.label_names, report.boxplot_png, report.tolerance_mm)
