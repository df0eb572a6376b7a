"""The files of one segmented case in ``OUTPUT/<case_id>/``, and the ``case.json`` manifest that says they are done.

======================  ===========  =====================================================================
file                    ``--formats``  what
======================  ===========  =====================================================================
``<id>_seg.nii.gz``     nifti        uint8 label map, the scan's exact grid (Slicer opens it as a label map)
``<id>.seg.nrrd``       seg.nrrd     Slicer segmentation with segment names, colours, terminology codes
``<id>_seg.ctbl``       ctbl         Slicer colour table for the NIfTI label map
``<id>_seg.dcm``        dicom-seg    DICOM SEG referencing the CT series (DICOM input only)
``<id>_rtstruct.dcm``   rtstruct     RTSTRUCT referencing the CT series (DICOM input only)
``<id>_quicklook.png``  png          axial, coronal, sagittal views with the organs overlaid
``case.json``           (always)     manifest, written last: settings, outputs, the case's summary record
======================  ===========  =====================================================================

Every file is written atomically. ``case.json`` is written after all the others, so a case is complete exactly
when its manifest exists, lists every file it promised, all of them exist, and it was made with the same settings
(model, TTA, postprocessing...) and at least the formats asked for now. A DICOM output that cannot apply (non-DICOM
input; a series the reader had to resample; source slices without the UIDs a reference needs; an empty mask for
DICOM SEG) is skipped with the reason in the manifest and a ``output_skipped`` QA flag, not an error. A writer that
fails is skipped the same way (its reason says it failed): the other formats and ``case.json`` are still written,
and the batch decides whether a requested format that is missing fails the case (``--strict-formats``).
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pydicom.config
from pydicom.dataset import Dataset

from medseg.errors import MedsegError, one_line
from medseg.inference.options import DICOM_FORMATS
from medseg.inference.options import FORMATS as FORMATS
from medseg.inference.options import parse_formats as parse_formats
from medseg.inference.segmenter import Segmentation
from medseg.io.files import atomic_path, read_json_object
from medseg.io.writers import (
    write_color_table,
    write_dicom_seg,
    write_label_nifti,
    write_rtstruct,
    write_seg_nrrd,
)
from medseg.io.writers.geometry import check_source_references
from medseg.io.writers.labels import label_table
from medseg.reporting import CaseRecord, write_quicklook

MANIFEST_NAME = "case.json"
MANIFEST_FORMAT = "medseg-case"
MANIFEST_VERSION = 1

logger = logging.getLogger(__name__)


def output_names(case_id: str) -> dict[str, str]:
    """File name of each format for ``case_id``."""
    return {
        "nifti": f"{case_id}_seg.nii.gz",
        "seg.nrrd": f"{case_id}.seg.nrrd",
        "ctbl": f"{case_id}_seg.ctbl",
        "dicom-seg": f"{case_id}_seg.dcm",
        "rtstruct": f"{case_id}_rtstruct.dcm",
        "png": f"{case_id}_quicklook.png",
    }


@dataclass
class CaseOutputs:
    """What :func:`write_case_outputs` produced: file names relative to the case folder, the formats not written
    with the reason, and the traceback of each writer that failed (for ``--debug``)."""

    files: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    tracebacks: dict[str, str] = field(default_factory=dict)

    def failed(self, fmt: str, err: Exception) -> None:
        """Record that the writer of ``fmt`` raised ``err`` (call it inside the ``except`` block)."""
        self.skipped[fmt] = f"the {fmt} writer failed: {one_line(err)}"
        self.tracebacks[fmt] = traceback.format_exc()
        logger.debug("%s writer failed:\n%s", fmt, self.tracebacks[fmt])


def source_datasets(segmentation: Segmentation) -> list[Dataset]:
    """The DICOM headers (no pixel data) of the series the scan was read from."""
    series = segmentation.scan.series
    if series is None:
        return []
    datasets: list[Dataset] = []
    # The source's own quirks (over-long SH values are common) are copied as they are, not warned about once per
    # slice: decode every element now, with pydicom's value validation off.
    with pydicom.config.disable_value_validation():
        for path in series.files:
            dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            for _element in dataset:
                pass
            datasets.append(dataset)
    return datasets


def _dicom_skip_reason(segmentation: Segmentation, sources: list[Dataset]) -> str | None:
    scan = segmentation.scan
    if scan.series is None:
        return f"input is {scan.source_format}, not DICOM"
    if scan.repaired:
        return "the reader resampled the series to repair its geometry, so the mask's planes are not its slices"
    try:
        check_source_references(sources)
    except MedsegError as err:
        return err.problem
    return None


def write_case_outputs(
    segmentation: Segmentation,
    case_id: str,
    case_dir: Path,
    label_names: Mapping[int, str],
    formats: Sequence[str],
) -> CaseOutputs:
    """Write the requested formats of one case into ``case_dir`` (created), each atomically, for the organs of
    ``label_names`` (``{label value: organ name}``; their colours and codes from
    :func:`medseg.io.writers.label_table`). A format that does not apply, or whose writer fails, is recorded in
    ``skipped`` with the reason; the others are written all the same.
    """
    table = label_table(label_names)
    names = output_names(case_id)
    outputs = CaseOutputs()
    labels = segmentation.labels
    for fmt in formats:
        if fmt in DICOM_FORMATS:
            continue
        path = case_dir / names[fmt]
        try:
            if fmt == "nifti":
                write_label_nifti(labels, path)
            elif fmt == "seg.nrrd":
                write_seg_nrrd(labels, table, path)
            elif fmt == "ctbl":
                write_color_table(table, path)
            elif fmt == "png":
                write_quicklook(segmentation.scan.image, labels, table, path, title=case_id)
        except Exception as err:  # one format failing must not cost the others
            outputs.failed(fmt, err)
            continue
        outputs.files[fmt] = names[fmt]
    wanted_dicom = [fmt for fmt in formats if fmt in DICOM_FORMATS]
    if not wanted_dicom:
        return outputs
    try:
        sources = source_datasets(segmentation)
    except Exception as err:  # the source headers cannot be re-read: no DICOM output can reference them
        for fmt in wanted_dicom:
            outputs.failed(fmt, err)
        return outputs
    reason = _dicom_skip_reason(segmentation, sources)
    for fmt in wanted_dicom:
        if reason is not None:
            outputs.skipped[fmt] = reason
            continue
        path = case_dir / names[fmt]
        try:
            if fmt == "dicom-seg":
                if write_dicom_seg(labels, table, sources, path) is None:
                    outputs.skipped[fmt] = "the mask has no labelled voxel (a DICOM SEG needs a segment)"
                    continue
            else:
                write_rtstruct(labels, table, sources, path)
        except Exception as err:
            outputs.failed(fmt, err)
            continue
        outputs.files[fmt] = names[fmt]
    return outputs


def write_manifest(
    case_dir: Path,
    record: CaseRecord,
    settings: Mapping[str, Any],
    formats: Sequence[str],
    outputs: CaseOutputs,
    warnings_: Sequence[str] = (),
) -> Path:
    """Write ``case.json`` atomically (call it after every output file exists)."""
    document = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "case_id": record.case_id,
        "settings": dict(settings),
        "formats": list(formats),
        "outputs": dict(outputs.files),
        "skipped_outputs": dict(outputs.skipped),
        "warnings": list(warnings_),
        "record": record.to_dict(),
    }
    path = case_dir / MANIFEST_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_manifest(case_dir: Path) -> dict[str, Any] | None:
    """The case's manifest, or ``None`` when it is absent or unreadable (an unreadable one means: redo)."""
    path = case_dir / MANIFEST_NAME
    try:
        document = read_json_object(path, "the case manifest")
    except MedsegError:
        return None
    return document if document.get("format") == MANIFEST_FORMAT else None


def completed_record(
    case_dir: Path, settings: Mapping[str, Any], formats: Sequence[str]
) -> tuple[CaseRecord | None, str]:
    """The summary record of a case already done with these settings and formats, or ``(None, why not)``."""
    manifest = read_manifest(case_dir)
    if manifest is None:
        return None, "no manifest"
    if manifest.get("settings") != dict(settings):
        return None, "made with other settings (model, TTA, postprocessing or geometry repair)"
    if not set(formats) <= set(manifest.get("formats", [])):
        return None, "made with fewer output formats"
    missing = [name for name in manifest.get("outputs", {}).values() if not (case_dir / name).is_file()]
    if missing:
        return None, f"output files missing: {', '.join(missing)}"
    try:
        return CaseRecord.from_dict(manifest["record"]), "complete"
    except (KeyError, TypeError, ValueError):
        return None, "manifest has no valid record"


def discard_manifest(case_dir: Path) -> None:
    """Remove the manifest and the files it lists, so an interrupted redo never looks complete."""
    manifest = read_manifest(case_dir)
    (case_dir / MANIFEST_NAME).unlink(missing_ok=True)
    if manifest is None:
        return
    for name in manifest.get("outputs", {}).values():
        target = case_dir / str(name)
        # Only plain names inside the case folder: a tampered manifest must not delete elsewhere.
        if target.parent == case_dir and os.sep not in str(name):
            target.unlink(missing_ok=True)
