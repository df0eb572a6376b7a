"""Per-organ summary over cases: mean, median, 95% percentile-bootstrap confidence interval of the mean, n.

The CI is scipy's percentile bootstrap (10,000 resamples of the cases, ``numpy.random.default_rng(0)`` by default,
so the same metrics give the same interval on every run). Cases whose status is ``both_empty`` (metric NaN) are not
counted; ``missing_in_pred`` / ``missing_in_ref`` cases are (Dice 0, NSD 0, HD95 at its worst case). With one case
the interval is NaN; when every case has the same value it is that value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from medseg.evaluation.metrics import (
    STATUS_BOTH_EMPTY,
    STATUS_MISSING_IN_PRED,
    STATUS_MISSING_IN_REF,
    LabelMetrics,
)

BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE_LEVEL = 0.95
CI_METHOD = f"95% CI: percentile bootstrap of the mean over cases, {BOOTSTRAP_RESAMPLES} resamples, fixed seed"


@dataclass(frozen=True)
class MetricSummary:
    """One metric of one organ over the cases where it is defined (``n`` of them)."""

    n: int
    mean: float
    median: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class OrganSummary:
    label_id: int
    label: str
    n_both_empty: int
    n_missing_in_pred: int
    n_missing_in_ref: int
    dice: MetricSummary
    hd95_mm: MetricSummary
    nsd: MetricSummary

    @property
    def n(self) -> int:
        """Cases that count towards the means (every status except ``both_empty``)."""
        return self.dice.n


def bootstrap_ci(values: Sequence[float] | np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap confidence interval of the mean of ``values`` (NaN-free, shape ``(n,)``)."""
    data = np.asarray(values, dtype=float)
    if data.size < 2:
        return math.nan, math.nan
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])  # the bootstrap distribution is a point; scipy would warn
    result = stats.bootstrap(
        (data,),
        np.mean,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=CONFIDENCE_LEVEL,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def summarize_metric(values: Sequence[float], seed: int = 0) -> MetricSummary:
    """Summary of the finite values in ``values`` (NaN = undefined, skipped)."""
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if data.size == 0:
        return MetricSummary(0, math.nan, math.nan, math.nan, math.nan)
    low, high = bootstrap_ci(data, seed)
    return MetricSummary(int(data.size), float(np.mean(data)), float(np.median(data)), low, high)


def summarize(
    results: Mapping[str, Sequence[LabelMetrics]], label_names: Mapping[int, str], seed: int = 0
) -> list[OrganSummary]:
    """Summarise per organ.

    Args:
        results: case id -> that case's :class:`LabelMetrics` (a label a case lacks counts as ``both_empty``).
        label_names: label id -> name; every id here gets a row, in id order, even if no case scored it.
        seed: bootstrap seed.
    """
    by_label: dict[int, list[LabelMetrics]] = {label_id: [] for label_id in label_names}
    for case_metrics in results.values():
        for metrics in case_metrics:
            by_label.setdefault(metrics.label_id, []).append(metrics)
    summaries = []
    for label_id in sorted(by_label):
        rows = by_label[label_id]
        statuses = [row.status for row in rows]
        summaries.append(
            OrganSummary(
                label_id=label_id,
                label=label_names.get(label_id, f"label_{label_id}"),
                n_both_empty=statuses.count(STATUS_BOTH_EMPTY) + len(results) - len(rows),
                n_missing_in_pred=statuses.count(STATUS_MISSING_IN_PRED),
                n_missing_in_ref=statuses.count(STATUS_MISSING_IN_REF),
                dice=summarize_metric([row.dice for row in rows], seed),
                hd95_mm=summarize_metric([row.hd95_mm for row in rows], seed),
                nsd=summarize_metric([row.nsd for row in rows], seed),
            )
        )
    return summaries


def _cell(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def format_table(summaries: Sequence[OrganSummary], tolerance_mm: float) -> str:
    """A fixed-width text table of the organs with ``n > 0`` (one line each), for the terminal."""
    header = (
        f"{'label':<28} {'n':>4}  {'Dice mean [95% CI]':<22} {'median':>6}  {'HD95 mm mean [95% CI]':<24} "
        f"{'median':>6}  {f'NSD@{tolerance_mm:g}mm mean':>16}  {'miss pred/ref':>13}"
    )
    lines = [header, "-" * len(header)]
    for row in summaries:
        if row.n == 0:
            continue
        dice = f"{_cell(row.dice.mean, 3)} [{_cell(row.dice.ci_low, 3)}, {_cell(row.dice.ci_high, 3)}]"
        hd95 = f"{_cell(row.hd95_mm.mean, 1)} [{_cell(row.hd95_mm.ci_low, 1)}, {_cell(row.hd95_mm.ci_high, 1)}]"
        lines.append(
            f"{row.label[:28]:<28} {row.n:>4}  {dice:<22} {_cell(row.dice.median, 3):>6}  {hd95:<24} "
            f"{_cell(row.hd95_mm.median, 1):>6}  {_cell(row.nsd.mean, 3):>16}  "
            f"{f'{row.n_missing_in_pred}/{row.n_missing_in_ref}':>13}"
        )
    skipped = sum(1 for row in summaries if row.n == 0)
    if skipped:
        lines.append(f"({skipped} label(s) absent from both sides in every case not shown)")
    lines.append(CI_METHOD)
    return "\n".join(lines)
