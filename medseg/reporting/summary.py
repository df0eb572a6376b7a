"""The batch summary: one row per case in ``summary.csv`` (for people and spreadsheets) and ``summary.json`` (for
programs, and for merging the summaries of several shards into one).

A row holds the case's status and error, the series that was chosen, the input geometry, the volume of each organ
in mL, the seconds of each stage and the peak memory (measured by :class:`StageClock`; nnU-Net#1041: nobody reports
per-case timing), the QA flags and the warnings (what the reader noticed or
repaired, outputs that were skipped and why). Both files are written atomically, so a
summary rewritten after every case is never half written when a run is killed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import io
import json
import math
import os
import resource
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from medseg import __version__
from medseg.errors import InputError
from medseg.io.files import atomic_path, read_json_object

SUMMARY_FORMAT = "medseg-summary"
SUMMARY_FORMAT_VERSION = 1
STATUSES = ("ok", "failed", "skipped")
_VOLUME_PREFIX = "volume_ml:"
_SECONDS_PREFIX = "seconds:"
# Warnings are sentences (they may hold ";" or ","): joined with a separator they do not use.
WARNINGS_SEPARATOR = " | "
_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def utc_now() -> str:
    """The current time as ISO 8601 UTC with seconds, e.g. ``2025-01-31T12:00:00+00:00``."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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


@dataclasses.dataclass
class CaseRecord:
    """What happened to one case.

    Attributes:
        case_id: the case's id (its output folder name).
        status: ``"ok"``, ``"failed"`` or ``"skipped"`` (an entry of the input that is not a scan).
        input: the file or folder the case was read from.
        error: one-line error message when the case failed, or why the entry was skipped.
        series: the series chosen from the input (e.g. SeriesInstanceUID and description), if there was a choice.
        size: image size (x, y, z) in voxels.
        spacing_mm: voxel size (x, y, z) in mm.
        origin_mm: position of voxel (0, 0, 0) in LPS mm.
        direction: 3x3 direction matrix, row-major, as ITK gives it.
        volumes_ml: organ name -> volume in mL.
        seconds: stage name -> wall seconds.
        peak_memory_mb: peak resident memory while the case ran, MiB.
        qa_flags: QA flags as ``code:organ`` strings.
        warnings: one line each: the reader's warnings (e.g. a repaired geometry, a series chosen among several)
            and the outputs that were skipped, with the reason.
        outputs: files written for the case, relative to the output root.
        outputs_not_written: output format -> why it was not written (did not apply to the input, or its writer
            failed), for every format asked of the case; which of them count as missing depends on the request
            (:class:`medseg.inference.batch.BatchResult`).
        finished_at: when the case finished (ISO 8601 UTC); decides which record wins a merge.
    """

    case_id: str
    status: str
    input: str = ""
    error: str = ""
    series: str = ""
    size: list[int] | None = None
    spacing_mm: list[float] | None = None
    origin_mm: list[float] | None = None
    direction: list[float] | None = None
    volumes_ml: dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    peak_memory_mb: float | None = None
    qa_flags: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    outputs: list[str] = dataclasses.field(default_factory=list)
    outputs_not_written: dict[str, str] = dataclasses.field(default_factory=dict)
    finished_at: str = dataclasses.field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"case {self.case_id!r}: status must be one of {STATUSES}, got {self.status!r}")

    def set_geometry(self, image: sitk.Image) -> None:
        """Fill size, spacing, origin and direction from an image."""
        self.size = [int(v) for v in image.GetSize()]
        self.spacing_mm = [float(v) for v in image.GetSpacing()]
        self.origin_mm = [float(v) for v in image.GetOrigin()]
        self.direction = [float(v) for v in image.GetDirection()]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (non-finite numbers become ``None``)."""
        return _finite(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseRecord:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so newer summaries still read."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _ordered_union(dicts: Iterable[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for mapping in dicts:
        keys.update(dict.fromkeys(mapping))
    return list(keys)


def _number(value: float | None, digits: int) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _join(values: Sequence[float] | None, digits: int = 6) -> str:
    return "" if values is None else " ".join(f"{v:.{digits}g}" for v in values)


def summary_csv_text(records: Sequence[CaseRecord]) -> str:
    """The CSV text: fixed columns, then one ``volume_ml:<organ>`` and one ``seconds:<stage>`` column per organ
    and stage seen in any record (empty where a case has none), QA flags joined with ``;``, warnings (each on one
    line) joined with :data:`WARNINGS_SEPARATOR`."""
    organs = _ordered_union(record.volumes_ml for record in records)
    stages = _ordered_union(record.seconds for record in records)
    header = ["case_id", "status", "error", "input", "series", "size", "spacing_mm", "origin_mm", "direction"]
    header += [_VOLUME_PREFIX + organ for organ in organs]
    header += [_SECONDS_PREFIX + stage for stage in stages]
    header += ["peak_memory_mb", "qa_flags", "warnings", "finished_at"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for record in records:
        row = [
            record.case_id,
            record.status,
            " ".join(record.error.split()),  # one line per case, whatever the message
            record.input,
            record.series,
            "x".join(str(v) for v in record.size) if record.size else "",
            _join(record.spacing_mm),
            _join(record.origin_mm, 8),
            _join(record.direction),
        ]
        row += [_number(record.volumes_ml.get(organ), 2) for organ in organs]
        row += [_number(record.seconds.get(stage), 2) for stage in stages]
        warnings = WARNINGS_SEPARATOR.join(" ".join(warning.split()) for warning in record.warnings)
        row += [_number(record.peak_memory_mb, 0), ";".join(record.qa_flags), warnings, record.finished_at]
        writer.writerow(row)
    return buffer.getvalue()


def write_summary(
    records: Sequence[CaseRecord], folder: str | os.PathLike[str], merged_from: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``folder/summary.csv`` and ``folder/summary.json`` atomically, cases sorted by id.

    Returns:
        (csv path, json path).
    """
    folder = Path(folder)
    ordered = sorted(records, key=lambda record: record.case_id)
    counts = {status: sum(record.status == status for record in ordered) for status in STATUSES}
    document: dict[str, Any] = {
        "format": SUMMARY_FORMAT,
        "format_version": SUMMARY_FORMAT_VERSION,
        "medseg_version": __version__,
        "written_at": utc_now(),
        "counts": counts,
        "cases": [record.to_dict() for record in ordered],
    }
    if merged_from:
        document["merged_from"] = list(merged_from)
    csv_path, json_path = folder / "summary.csv", folder / "summary.json"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    with atomic_path(csv_path) as tmp:
        tmp.write_text(summary_csv_text(ordered), encoding="utf-8", newline="")
    return csv_path, json_path


def read_summary(path: str | os.PathLike[str]) -> list[CaseRecord]:
    """The case records of a ``summary.json``.

    Raises:
        InputError: if the file is not a medseg summary (or a newer format than this medseg reads).
    """
    path = Path(path)
    document = read_json_object(path, "the summary")
    if document.get("format") != SUMMARY_FORMAT:
        raise InputError(path, f"not a medseg summary (format {document.get('format')!r})")
    if int(document.get("format_version", 0)) > SUMMARY_FORMAT_VERSION:
        raise InputError(path, f"summary format_version {document['format_version']} is newer than this medseg reads")
    try:
        return [CaseRecord.from_dict(case) for case in document.get("cases", [])]
    except (TypeError, ValueError) as err:
        raise InputError(path, f"bad case record: {err}") from err


def _finish_time(record: CaseRecord) -> datetime.datetime:
    """When a record finished, comparable across time zones; unreadable times sort first."""
    try:
        moment = datetime.datetime.fromisoformat(record.finished_at)
    except (TypeError, ValueError):
        return datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def merge_summaries(
    summary_paths: Sequence[str | os.PathLike[str]], folder: str | os.PathLike[str]
) -> tuple[Path, Path]:
    """Merge the ``summary.json`` files of several shards into one summary (CSV and JSON) in ``folder``.

    A case in more than one shard (a case re-run after a failure, say) keeps its most recently finished record;
    on a tie, the one from the later path in ``summary_paths``.

    Returns:
        (csv path, json path) of the merged summary.
    """
    if not summary_paths:
        raise ValueError("no summaries to merge")
    chosen: dict[str, CaseRecord] = {}
    for path in summary_paths:
        for record in read_summary(path):
            previous = chosen.get(record.case_id)
            if previous is None or _finish_time(record) >= _finish_time(previous):
                chosen[record.case_id] = record
    return write_summary(list(chosen.values()), folder, merged_from=[str(path) for path in summary_paths])
