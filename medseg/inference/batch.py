"""``medseg segment INPUT OUTPUT``: segment every case of a folder, resumably, one failing case never stopping the
rest, with a summary of every case.

For each case (:func:`medseg.inference.cases.discover_cases`), in case-id order:

1. skip it when ``OUTPUT/<case_id>/case.json`` says it is complete with the same settings (unless ``overwrite``);
   its record from the manifest goes into the summary, so a resumed batch reports the same as an uninterrupted one;
2. otherwise remove the old manifest (so a half-redone case never looks complete), segment, write the outputs
   (:mod:`medseg.inference.outputs`), compute volumes and QA flags, and write the manifest last;
3. any exception is recorded as a failed case (status, one-line error; ``debug`` shows its traceback) and the
   batch goes on; the summary (``summary.csv`` + ``summary.json``) is rewritten after every case, atomically.

Entries of a folder of patients that are not scans (:mod:`medseg.inference.cases`) get a row too: *failed* with the
reason (a patient folder without a scan, a broken link), or *skipped* (a stray file). Problems with one case's
output folder (``OUTPUT/<case_id>`` is a file, or cannot be written) fail that case; problems with the output
folder itself (OUTPUT is a file or cannot be written, ``summary.csv`` is a folder) raise
:class:`~medseg.errors.MedsegError` before any case runs.

A requested output format that could not be written (it did not apply, or its writer failed) is named for its case
and counted (:attr:`BatchResult.not_written`); the case's other outputs and manifest are written all the same, unless
``strict_formats`` makes it a case error. With ``formats="all"`` the DICOM formats are expected of DICOM input only.

Temporaries left by a killed run (``.medseg-tmp-*``) are removed before anything is written.

Scale-out: under ``torchrun --nproc_per_node N`` (``RANK`` / ``WORLD_SIZE`` set) rank r takes cases r, r+N, ... of
the sorted list, writes its summary shard to ``OUTPUT/.medseg-shards/rank-r-of-N/`` and, after a barrier, rank 0
merges the shards into ``OUTPUT/summary.csv`` / ``summary.json``. With CUDA each rank uses GPU ``LOCAL_RANK``.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from medseg.errors import InputError, MedsegError, one_line
from medseg.inference.cases import Case, discover_cases
from medseg.inference.options import DICOM_FORMATS, Precision, means_all, parse_formats
from medseg.inference.outputs import (
    CaseOutputs,
    completed_record,
    discard_manifest,
    write_case_outputs,
    write_manifest,
)
from medseg.inference.segmenter import Segmentation, Segmenter
from medseg.io.files import case_output_dir, probe_writable, remove_stale_temporaries
from medseg.reporting import OPENKBP_VOLUMES, CaseRecord, QAFlag, StageClock, merge_summaries, qa_flags, write_summary
from medseg.reporting.batch_report import write_batch_report
from medseg.reporting.volumes import image_volumes_ml

logger = logging.getLogger(__name__)

SHARDS_DIR = ".medseg-shards"
# Ranks wait for each other only at the start (rank 0 cleans the output folder) and at the end (rank 0 merges the
# summaries); a shard of many big cases can take hours.
STARTUP_TIMEOUT = datetime.timedelta(minutes=30)
FINISH_TIMEOUT = datetime.timedelta(hours=48)


def missing_outputs(record: CaseRecord, formats: Sequence[str], all_formats: bool) -> dict[str, str]:
    """The formats of ``formats`` that ``record``'s case lacks, with the reason. With ``all_formats`` (``--formats
    all``) the DICOM formats count only for DICOM input (a record with a ``series``)."""
    return {
        fmt: reason
        for fmt, reason in record.outputs_not_written.items()
        if fmt in formats and not (all_formats and fmt in DICOM_FORMATS and not record.series)
    }


@dataclass
class BatchResult:
    """What a batch did: one record per case of this process's shard, and the summary files written."""

    records: list[CaseRecord] = field(default_factory=list)
    summary_csv: Path | None = None
    summary_json: Path | None = None
    formats: tuple[str, ...] = ()
    all_formats: bool = True

    @property
    def failed(self) -> list[CaseRecord]:
        return [record for record in self.records if record.status == "failed"]

    @property
    def skipped(self) -> list[CaseRecord]:
        """Entries of the input that are not scans."""
        return [record for record in self.records if record.status == "skipped"]

    @property
    def ok(self) -> list[CaseRecord]:
        return [record for record in self.records if record.status == "ok"]

    @property
    def not_written(self) -> dict[str, dict[str, str]]:
        """Case id -> requested output formats that were not written for that (segmented) case -> why."""
        missing = {record.case_id: missing_outputs(record, self.formats, self.all_formats) for record in self.ok}
        return {case_id: formats for case_id, formats in missing.items() if formats}

    @property
    def exit_code(self) -> int:
        """0 when every case succeeded (skipped entries are no cases), 1 when any failed."""
        return 1 if self.failed else 0


@dataclass(frozen=True)
class Shard:
    """This process's place in a torchrun job: rank ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Shard:
        """From torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (a single process when unset).

        Raises:
            MedsegError: the variables are not integers with 0 <= RANK < WORLD_SIZE.
        """
        try:
            rank = int(os.environ.get("RANK", "0"))
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as err:
            raise MedsegError(None, f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {err}") from err
        if world_size < 1 or not 0 <= rank < world_size:
            raise MedsegError(None, f"RANK {rank} / WORLD_SIZE {world_size} is not a valid torchrun rank")
        return cls(rank, world_size, local_rank)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def take(self, cases: Sequence[Case]) -> list[Case]:
        """This rank's cases: every ``world_size``-th of the sorted list, starting at ``rank``."""
        return list(cases[self.rank :: self.world_size])

    @property
    def summary_dir(self) -> Path:
        return Path(SHARDS_DIR) / f"rank-{self.rank}-of-{self.world_size}"


def _device_for(device: str, shard: Shard) -> str:
    if shard.distributed and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{shard.local_rank}"
    return device


def _series_text(segmentation: Segmentation) -> str:
    series = segmentation.scan.series
    if series is None:
        return ""
    return f"{series.uid or '(no SeriesInstanceUID)'} '{series.description}' ({series.n_files} files)"


def _refuse_output_inside_input(input_path: Path, output_dir: Path) -> None:
    if input_path.is_dir() and output_dir.resolve().is_relative_to(input_path.resolve()):
        raise InputError(output_dir, f"is inside the input folder {input_path}: the next run would read it as a case")


def _output_folder_error(path: Path, err: OSError) -> MedsegError:
    return MedsegError(path, f"cannot be written: {err.strerror or err}")


def prepare_output_folder(output: Path, create: bool = True) -> None:
    """Check that the batch can write its outputs and summary in ``output`` before any case runs; with ``create``
    (rank 0) also create it, try a write, and remove the temporaries an interrupted run left.

    Raises:
        MedsegError: ``output`` is an existing file, cannot be created or written, or ``summary.csv`` /
            ``summary.json`` in it is not a file.
    """
    if output.exists() and not output.is_dir():
        raise MedsegError(output, "exists and is not a folder: name a folder for the outputs")
    for name in ("summary.csv", "summary.json"):
        target = output / name
        if (target.exists() or target.is_symlink()) and not target.is_file():
            raise MedsegError(target, "is not a file: the batch summary cannot be written there (move it away)")
    if not create:
        return
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MedsegError(output, f"cannot be created: {err.strerror or err}") from err
    try:
        probe_writable(output)
        for stale in remove_stale_temporaries(output):
            logger.info("removed a temporary left by an interrupted run: %s", stale)
    except OSError as err:
        raise _output_folder_error(output, err) from err


def _write_summary(records: Sequence[CaseRecord], folder: Path) -> tuple[Path, Path]:
    try:
        return write_summary(records, folder)
    except OSError as err:  # the output folder itself went bad: no later case could be reported either
        raise _output_folder_error(folder, err) from err


class BatchSegmenter:
    """Runs the cases of one shard with one :class:`Segmenter` (see the module notes).

    ``formats`` is what ``--formats`` says (``None`` or ``"all"``: every format, DICOM ones for DICOM input);
    ``strict_formats`` fails a case that lacks a requested format; ``debug`` prints the traceback of each failure.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        output_dir: Path,
        formats: str | Sequence[str] | None = None,
        overwrite: bool = False,
        shard: Shard | None = None,
        progress: bool = True,
        echo: Callable[[str], None] | None = None,
        strict_formats: bool = False,
        debug: bool = False,
    ) -> None:
        self.segmenter = segmenter
        self.output_dir = output_dir
        self.formats = parse_formats(formats)
        self.all_formats = means_all(formats)
        self.strict_formats = strict_formats
        self.debug = debug
        self.overwrite = overwrite
        self.shard = shard or Shard()
        self.progress = progress
        self.echo = echo or (lambda line: tqdm.write(line))
        self.settings = dict(segmenter.settings())
        # Expected volume ranges only for the organs the reference population has.
        self.expected = {
            name: OPENKBP_VOLUMES[name] for name in segmenter.label_names.values() if name in OPENKBP_VOLUMES
        }

    def run(self, cases: Sequence[Case]) -> list[CaseRecord]:
        records: list[CaseRecord] = []
        bar = tqdm(
            cases,
            desc="segment" if not self.shard.distributed else f"segment rank {self.shard.rank}",
            unit="case",
            disable=not self.progress,
            position=self.shard.rank,
        )
        for case in bar:
            bar.set_postfix_str(case.case_id)
            records.append(self.run_case(case))
            self._write_summary(records)
        return records

    def _write_summary(self, records: list[CaseRecord]) -> None:
        folder = self.output_dir / self.shard.summary_dir if self.shard.distributed else self.output_dir
        _write_summary(records, folder)

    def _show_traceback(self, text: str) -> None:
        if self.debug:
            tqdm.write(text.rstrip(), file=sys.stderr)

    def _missing(self, record: CaseRecord) -> dict[str, str]:
        return missing_outputs(record, self.formats, self.all_formats)

    def _echo_missing(self, case_id: str, missing: Mapping[str, str]) -> None:
        for fmt, reason in missing.items():
            self.echo(f"{case_id}: requested output {fmt} NOT WRITTEN: {reason}")

    def _reuse(self, case_dir: Path, case_id: str) -> CaseRecord | None:
        """The record of a complete earlier run of the case, or ``None`` to redo it (old manifest removed)."""
        if not case_dir.is_dir():
            raise MedsegError(case_dir, "exists and is not a folder: the case's outputs cannot be written there")
        try:
            remove_stale_temporaries(case_dir)
            probe_writable(case_dir)
        except OSError as err:
            raise MedsegError(case_dir, f"cannot be written: {err.strerror or err}") from err
        if not self.overwrite:
            previous, why = completed_record(case_dir, self.settings, self.formats)
            if previous is not None and self.strict_formats and self._missing(previous):
                previous, why = None, "requested outputs are missing and --strict-formats is on"
            if previous is not None:
                self.echo(f"{case_id}: already done, skipped (--overwrite redoes it)")
                self._echo_missing(case_id, self._missing(previous))
                return previous
            logger.info("%s: redoing (%s)", case_id, why)
        discard_manifest(case_dir)
        return None

    def run_case(self, case: Case) -> CaseRecord:
        """Segment one case, or reuse its complete outputs; never raises for a problem with the case."""
        if case.skip_reason is not None:
            self.echo(f"{case.case_id}: skipped, {case.skip_reason}")
            return CaseRecord(case.case_id, "skipped", input=str(case.path), error=case.skip_reason)
        if case.problem is not None:
            self.echo(f"{case.case_id}: FAILED: {case.problem}")
            return CaseRecord(case.case_id, "failed", input=str(case.path), error=case.problem)
        clock = StageClock()
        record = CaseRecord(case.case_id, "ok", input=str(case.path))
        try:
            case_dir = case_output_dir(self.output_dir, case.case_id)
            if case_dir.exists() or case_dir.is_symlink():
                previous = self._reuse(case_dir, case.case_id)
                if previous is not None:
                    return previous
            segmentation = self.segmenter.segment(case.path, clock)
            record.warnings = list(segmentation.scan.warnings)  # kept also if writing the outputs fails
            record.series = _series_text(segmentation)
            record.set_geometry(segmentation.scan.image)
            if record.series:
                self.echo(f"{case.case_id}: series {record.series}")
            with clock.stage("write"):
                outputs = write_case_outputs(
                    segmentation, case.case_id, case_dir, self.segmenter.label_names, self.formats
                )
            for text in outputs.tracebacks.values():
                self._show_traceback(text)
            self._fill_record(record, segmentation, outputs, case_dir)
            missing = self._missing(record)
            if missing and self.strict_formats:
                listing = "; ".join(f"{fmt} ({reason})" for fmt, reason in missing.items())
                raise MedsegError(None, f"requested output(s) not written (--strict-formats): {listing}")
            self._echo_missing(case.case_id, missing)
            record.seconds = {name: round(seconds, 3) for name, seconds in clock.seconds.items()}
            record.peak_memory_mb = round(clock.peak_memory_mb(), 1)
            write_manifest(case_dir, record, self.settings, self.formats, outputs, segmentation.scan.warnings)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # one bad case must not stop the batch: record it and go on
            logger.debug("%s failed:\n%s", case.case_id, traceback.format_exc())
            self._show_traceback(f"{case.case_id} failed:\n{traceback.format_exc()}")
            record.status = "failed"
            record.error = one_line(err)
            record.seconds = {name: round(seconds, 3) for name, seconds in clock.seconds.items()}
            record.peak_memory_mb = round(clock.peak_memory_mb(), 1)
            self.echo(f"{case.case_id}: FAILED: {record.error}")
        return record

    def _fill_record(
        self, record: CaseRecord, segmentation: Segmentation, outputs: CaseOutputs, case_dir: Path
    ) -> None:
        names = self.segmenter.label_names
        volumes = image_volumes_ml(segmentation.labels, names)
        record.volumes_ml = {names[value]: round(volume, 3) for value, volume in volumes.items()}
        scan = segmentation.scan
        flags = qa_flags(
            segmentation.labels,
            names,
            expected=self.expected or None,
            geometry_repairs=scan.warnings if scan.repaired else (),
            volumes_ml=volumes,
        )
        if not scan.repaired:
            flags += [QAFlag("reader_warning", None, warning) for warning in scan.warnings]
        flags += [QAFlag("output_skipped", fmt, reason) for fmt, reason in outputs.skipped.items()]
        record.qa_flags = [str(flag) for flag in flags]
        record.warnings += [f"{fmt} not written: {reason}" for fmt, reason in outputs.skipped.items()]
        record.outputs_not_written = dict(outputs.skipped)
        relative = case_dir.relative_to(self.output_dir)
        record.outputs = [(relative / name).as_posix() for name in outputs.files.values()]


def _init_distributed(shard: Shard) -> bool:
    """Join torchrun's process group (gloo: it only carries barriers); True when this call created it."""
    if not shard.distributed or not dist.is_available() or dist.is_initialized():
        return False
    dist.init_process_group(backend="gloo")
    return True


def _barrier(timeout: datetime.timedelta = STARTUP_TIMEOUT) -> None:
    """Wait for every rank; gloo's monitored barrier names a rank that never arrives instead of hanging."""
    if dist.get_backend() == "gloo":
        dist.monitored_barrier(timeout=timeout)
    else:  # a process group the caller made with another backend
        dist.barrier()


def segment_folder(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    segmenter: Segmenter | None = None,
    bundle: str | os.PathLike[str] | None = None,
    device: str = "auto",
    tta: bool = False,
    postprocess: bool = True,
    fix_geometry: bool = False,
    formats: str | Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    model_file: str | os.PathLike[str] | None = None,
    shard: Shard | None = None,
    precision: Precision = "fp32",
    strict_formats: bool = False,
    debug: bool = False,
) -> BatchResult:
    """Segment every case under ``input_path`` into ``output_dir`` (see the module notes).

    Args:
        input_path: a folder of patients (DICOM folders, NIfTI/NRRD files) or a single scan.
        output_dir: where ``<case_id>/`` folders and ``summary.csv``/``summary.json`` go (created).
        segmenter: an already loaded :class:`Segmenter`; otherwise one is made from ``bundle``, ``device``,
            ``tta``, ``postprocess``, ``fix_geometry``, ``model_file`` and ``precision``.
        formats: output formats (:data:`medseg.inference.options.FORMATS`) as a list or a comma list; ``None`` or
            ``"all"``: every format, the DICOM ones for DICOM input.
        overwrite: redo cases whose outputs are complete.
        progress: progress bars (cases, and sliding windows within a case).
        shard: this process's rank; default from torchrun's environment variables.
        strict_formats: a requested format that could not be written fails its case.
        debug: print the traceback of every failed case and output format.

    Returns:
        The records of this process's cases and, on rank 0, the merged summary paths.

    Raises:
        MedsegError: the input holds no case, the output folder is inside the input folder or cannot hold the
            outputs (see :func:`prepare_output_folder`), or the bundle or its weights cannot be loaded. Problems
            with single cases are recorded, not raised.
    """
    source = Path(input_path)
    output = Path(output_dir)
    shard = shard or Shard.from_env()
    parse_formats(formats)  # an unknown format is an error before any work
    cases = discover_cases(source)
    _refuse_output_inside_input(source, output)
    prepare_output_folder(output, create=False)
    created_group = _init_distributed(shard)
    try:
        if shard.rank == 0:
            prepare_output_folder(output)
        if shard.distributed:
            _barrier()
        if segmenter is None:
            segmenter = Segmenter(
                bundle,
                device=_device_for(device, shard),
                tta=tta,
                postprocess=postprocess,
                fix_geometry=fix_geometry,
                model_file=model_file,
                progress=progress,
                precision=precision,
            )
        batch = BatchSegmenter(
            segmenter, output, formats, overwrite, shard, progress, strict_formats=strict_formats, debug=debug
        )
        records = batch.run(shard.take(cases))
        result = BatchResult(records=records, formats=batch.formats, all_formats=batch.all_formats)
        if not shard.distributed:
            result.summary_csv, result.summary_json = _write_summary(result.records, output)
            write_batch_report(output)
            return result
        _write_summary(result.records, output / shard.summary_dir)  # also when this rank had no case
        _barrier(FINISH_TIMEOUT)
        if shard.rank == 0:
            shards = [output / Shard(r, shard.world_size).summary_dir / "summary.json" for r in range(shard.world_size)]
            result.summary_csv, result.summary_json = merge_summaries(shards, output)
            write_batch_report(output)
        return result
    finally:
        if created_group:
            dist.destroy_process_group()
