"""Per-case reporting for batch segmentation:

volumes.py    organ volumes in mL
qa.py         QA flags (organ missing, cut off at the scan border, implausible volume, geometry repaired)
summary.py    summary.csv / summary.json, one row per case; merging shard summaries; the seconds per stage and
              peak memory of a case (StageClock)
quicklook.py  a PNG per case: three orthogonal slices with coloured organ overlays
batch_report.py  OUTPUT/report.html: the summary table, failed cases and quick-looks in one self-contained file

The names below load on first use (PEP 562), so that importing one submodule does not import matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from medseg.reporting.batch_report import write_batch_report, write_report
    from medseg.reporting.qa import OPENKBP_VOLUMES, ExpectedVolume, QAFlag, qa_flags
    from medseg.reporting.quicklook import write_quicklook
    from medseg.reporting.summary import CaseRecord, StageClock, merge_summaries, read_summary, write_summary
    from medseg.reporting.volumes import image_volumes_ml, label_volumes_ml

_EXPORTS = {
    "medseg.reporting.batch_report": ("write_batch_report", "write_report"),
    "medseg.reporting.qa": ("OPENKBP_VOLUMES", "ExpectedVolume", "QAFlag", "qa_flags"),
    "medseg.reporting.quicklook": ("write_quicklook",),
    "medseg.reporting.summary": ("CaseRecord", "StageClock", "merge_summaries", "read_summary", "write_summary"),
    "medseg.reporting.volumes": ("image_volumes_ml", "label_volumes_ml"),
}
__all__ = [
    "OPENKBP_VOLUMES",
    "CaseRecord",
    "ExpectedVolume",
    "QAFlag",
    "StageClock",
    "image_volumes_ml",
    "label_volumes_ml",
    "merge_summaries",
    "qa_flags",
    "read_summary",
    "write_batch_report",
    "write_quicklook",
    "write_report",
    "write_summary",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
