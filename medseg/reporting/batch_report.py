"""``OUTPUT/report.html``: the batch as a person looks at it, in one self-contained file.

Made from what the batch already wrote, ``summary.json`` and each case's quick-look PNG, so it can be made again
at any time (:func:`write_batch_report`). It holds:

* the counts (segmented, failed, skipped) and, first, the failed cases with their errors;
* the summary table: status, each organ's volume in mL (cells with a QA flag on that organ are marked), the QA
  flags, the seconds the case took and its peak memory;
* each case's quick-look image, with the warnings of the case.

Self-contained: the images are embedded as ``data:`` URIs, the style sheet is inline, there is no script, and a
Content-Security-Policy forbids any other source, so the file opens the same from a laptop, a mail attachment or a
hospital network without internet, and never fetches anything. Every text from the summary (case ids, paths,
errors, series descriptions from DICOM headers) is HTML-escaped. Each embedded quick-look costs about 160 KB (a
batch of 100 cases gives a report of about 16 MB).
"""

from __future__ import annotations

import base64
import html
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from medseg import __version__
from medseg.errors import MedsegError
from medseg.io.files import atomic_path
from medseg.reporting.summary import CaseRecord, read_summary, utc_now

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"
SUMMARY_NAME = "summary.json"
QUICKLOOK_SUFFIX = "_quicklook.png"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Nothing but this file and its data: URIs: no network, no script.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# QA flags that concern an organ's volume cell.
_VOLUME_FLAGS = ("missing", "touches_border", "volume_low", "volume_high")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f3; position: sticky; top: 0; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
td.flagged { background: #fff3cd; }
.status-ok { color: #1a7f37; font-weight: bold; }
.status-failed { color: #c62828; font-weight: bold; }
.status-skipped { color: #8a6d00; font-weight: bold; }
table.failed td.error { color: #c62828; font-family: monospace; white-space: pre-wrap; }
.flags { font-family: monospace; font-size: 0.9em; white-space: nowrap; }
figure { margin: 1em 0 2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #333; background: #000; }
figcaption { font-weight: bold; margin-bottom: 0.3em; }
.missing-image { color: #8a6d00; }
ul.warnings { color: #8a6d00; margin: 0.3em 0; }
""".strip()


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _anchor(case_id: str) -> str:
    return "case-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in case_id)


def _ordered_organs(records: Iterable[CaseRecord]) -> list[str]:
    organs: dict[str, None] = {}
    for record in records:
        organs.update(dict.fromkeys(record.volumes_ml))
    return list(organs)


def _flagged_organs(record: CaseRecord) -> set[str]:
    organs = set()
    for flag in record.qa_flags:
        code, _, organ = flag.partition(":")
        if code in _VOLUME_FLAGS and organ:
            organs.add(organ)
    return organs


def quicklook_png(output_dir: Path, record: CaseRecord) -> bytes | None:
    """The bytes of the case's quick-look PNG listed in its outputs, if it is a PNG inside ``output_dir``."""
    root = output_dir.resolve()
    for relative in record.outputs:
        if not relative.endswith(QUICKLOOK_SUFFIX):
            continue
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file():  # a summary names files of this batch only
            continue
        try:
            data = path.read_bytes()
        except OSError as err:
            logger.warning("%s: cannot be read for the report: %s", path, err.strerror or err)
            continue
        if data.startswith(_PNG_SIGNATURE):
            return data
    return None


def _summary_table(records: Sequence[CaseRecord], organs: Sequence[str], with_image: set[str]) -> str:
    header = ["case", "status", *(f"{organ} (mL)" for organ in organs), "QA flags", "time (s)", "peak memory (MB)"]
    rows = ["<tr>" + "".join(f"<th>{_text(name)}</th>" for name in header) + "</tr>"]
    for record in records:
        case = _text(record.case_id)
        if record.case_id in with_image:
            case = f'<a href="#{_anchor(record.case_id)}">{case}</a>'
        flagged = _flagged_organs(record)
        cells = [f"<td>{case}</td>", f'<td class="status-{_text(record.status)}">{_text(record.status)}</td>']
        for organ in organs:
            volume = record.volumes_ml.get(organ)
            shown = "" if volume is None else f"{volume:.1f}"
            css = "number flagged" if organ in flagged else "number"
            cells.append(f'<td class="{css}">{shown}</td>')
        cells.append(f'<td class="flags">{"<br>".join(_text(flag) for flag in record.qa_flags)}</td>')
        total = sum(record.seconds.values()) if record.seconds else None
        cells.append(f'<td class="number">{"" if total is None else f"{total:.1f}"}</td>')
        memory = record.peak_memory_mb
        cells.append(f'<td class="number">{"" if memory is None else f"{memory:.0f}"}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return '<table class="summary">\n' + "\n".join(rows) + "\n</table>"


def _failed_table(failed: Sequence[CaseRecord]) -> str:
    rows = ["<tr><th>case</th><th>input</th><th>error</th></tr>"]
    for record in failed:
        rows.append(
            f"<tr><td>{_text(record.case_id)}</td><td>{_text(record.input)}</td>"
            f'<td class="error">{_text(record.error)}</td></tr>'
        )
    return '<table class="failed">\n' + "\n".join(rows) + "\n</table>"


def _figure(record: CaseRecord, png: bytes | None) -> str:
    parts = [f'<figure id="{_anchor(record.case_id)}">', f"<figcaption>{_text(record.case_id)}</figcaption>"]
    if png is not None:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<img src="data:image/png;base64,{data}" alt="quick-look of {_text(record.case_id)}">')
    else:
        parts.append('<p class="missing-image">no quick-look image (not written, or not asked for)</p>')
    if record.warnings:
        parts.append('<ul class="warnings">' + "".join(f"<li>{_text(w)}</li>" for w in record.warnings) + "</ul>")
    parts.append("</figure>")
    return "\n".join(parts)


def report_html(records: Sequence[CaseRecord], output_dir: str | os.PathLike[str]) -> str:
    """The report's HTML for ``records`` (sorted by case id here), quick-looks read from ``output_dir``."""
    folder = Path(output_dir)
    ordered = sorted(records, key=lambda record: record.case_id)
    counts = {status: sum(record.status == status for record in ordered) for status in ("ok", "failed", "skipped")}
    failed = [record for record in ordered if record.status == "failed"]
    images = {record.case_id: quicklook_png(folder, record) for record in ordered if record.status == "ok"}
    with_image = {case_id for case_id, png in images.items() if png is not None}
    body = [
        "<h1>medseg batch report</h1>",
        f'<p class="meta">{len(ordered)} case(s): {counts["ok"]} segmented, {counts["failed"]} failed, '
        f"{counts['skipped']} skipped &middot; {_text(folder.resolve())} &middot; medseg {_text(__version__)} "
        f"&middot; written {_text(utc_now())}</p>",
    ]
    if failed:
        body += [f'<h2 id="failed">Failed cases ({len(failed)})</h2>', _failed_table(failed)]
    body += ["<h2>Summary</h2>", _summary_table(ordered, _ordered_organs(ordered), with_image)]
    if images:
        body.append("<h2>Quick-look images</h2>")
        body += [_figure(record, images[record.case_id]) for record in ordered if record.case_id in images]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>medseg batch report</title>",
            f"<style>\n{_STYLE}\n</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def write_report(output_dir: str | os.PathLike[str]) -> Path:
    """Write ``output_dir/report.html`` (atomically) from its ``summary.json`` and the cases' quick-look PNGs.

    Raises:
        InputError: ``summary.json`` is missing or not a medseg summary.
    """
    folder = Path(output_dir)
    html_text = report_html(read_summary(folder / SUMMARY_NAME), folder)
    path = folder / REPORT_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(html_text, encoding="utf-8")
    return path


def write_batch_report(output_dir: str | os.PathLike[str]) -> Path | None:
    """:func:`write_report` at the end of a batch: a report that cannot be written is a warning, never a failed
    batch (the masks and the summary are what matter); returns ``None`` then."""
    try:
        return write_report(output_dir)
    except (OSError, MedsegError) as err:
        logger.warning("report.html not written: %s", err)
        return None
