"""Writing a report out: CSV (one row per group, then the total) and a PDF with the charts.

The CSV holds machine values: counts as integers, times in seconds, rates as
fractions (0.875), an empty cell where there is no value, so it reads back into
a spreadsheet or :mod:`csv` as the report's figures. The PDF is an A4 landscape
document laid out by :class:`QTextDocument`: branch and range in the header,
the key figures, the three charts as images, pauses by reason, and the group table.

Both raise :class:`ExportFailed`, whose ``str()`` is the sentence to show, when
the file cannot be written; nothing is left half-written at the chosen path.
"""

from __future__ import annotations

import csv
import html
import io
import os
import tempfile
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMarginsF, QSize, QSizeF, QUrl
from PySide6.QtGui import QPageLayout, QPageSize, QPdfWriter, QTextDocument

from desktop.charts import arrivals_chart, chart_image, histogram_chart, sla_chart
from desktop.report_data import GROUP_LABELS, Column, ReportResult, key_figures, shown

# The group table of the PDF: the columns that fit a landscape page, with short headings.
PDF_COLUMNS = {
    "Issued": "Issued",
    "Served": "Served",
    "No-shows": "No-show",
    "Cancelled": "Cancel",
    "Abandoned": "Aband.",
    "Transfers": "Transf.",
    "Wait mean (s)": "Wait mean",
    "Wait p50 (s)": "Wait p50",
    "Wait p90 (s)": "Wait p90",
    "Wait p95 (s)": "Wait p95",
    "Wait max (s)": "Wait max",
    "Service mean (s)": "Service mean",
    "SLA attainment": "SLA",
    "No-show rate": "No-show rate",
    "Throughput (served/h)": "Served /h",
}
CHART_SIZE = QSize(760, 360)
CHART_WIDTH = 390  # document pixels (1/96 in): two beside the key figures fill the page


class ExportFailed(Exception):  # noqa: N818 - reads as what happened
    """The export could not be written; ``str()`` says why, for the user."""


# -- CSV ---------------------------------------------------------------------------------


def csv_value(column: Column, value: float | None) -> str:
    if value is None:
        return ""
    if column.kind == "count":
        return str(int(value))
    return repr(round(float(value), 3))


def csv_text(result: ReportResult) -> str:
    columns = result.columns()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Key", GROUP_LABELS[result.request.group_by], *(c.title for c in columns)])
    for key, label, report in result.rows():
        writer.writerow([key, label, *(csv_value(c, c.value(report)) for c in columns)])
    return out.getvalue()


def write_csv(result: ReportResult, path: Path) -> None:
    _write(path, csv_text(result).encode("utf-8"))


# -- PDF ---------------------------------------------------------------------------------


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def report_html(result: ReportResult) -> str:
    names, request = result.names, result.request
    figure_rows = "".join(
        f"<tr><td nowrap>{_esc(name)}</td><td nowrap align=right><b>{_esc(value)}</b></td></tr>"
        for name, value in key_figures(result.total)
    )
    pauses = result.total.pause_seconds_by_reason
    pause_rows = (
        "".join(
            f"<tr><td>{_esc(reason)}</td><td align=right>{shown('seconds', seconds)}</td></tr>"
            for reason, seconds in pauses.items()
        )
        or "<tr><td colspan=2>No pauses in this range.</td></tr>"
    )
    columns = [c for c in result.columns() if c.title in PDF_COLUMNS]
    head = "".join(f"<th>{_esc(PDF_COLUMNS[c.title])}</th>" for c in columns)
    body = "".join(
        f"<tr{' class=total' if key == 'total' else ''}><td nowrap>{_esc(label)}</td>"
        + "".join(f"<td align=right>{_esc(shown(c.kind, c.value(r)))}</td>" for c in columns)
        + "</tr>"
        for key, label, r in result.rows()
    )
    group = GROUP_LABELS[request.group_by].lower()
    note = "<p><i>No tickets in this range.</i></p>" if result.empty else ""
    return f"""
<html><head><style>
body {{ font-family: sans-serif; font-size: 9pt; color: #1f2328; }}
h1 {{ font-size: 16pt; color: #1d3f66; margin-bottom: 2px; }}
h2 {{ font-size: 11pt; color: #1d3f66; margin-top: 8px; margin-bottom: 4px; }}
table.grid {{ border-collapse: collapse; }}
table.grid th {{ background: #e9edf2; font-size: 7pt; padding: 3px; }}
table.grid td {{ font-size: 7pt; padding: 2px 4px; border-bottom: 1px solid #e1e5ea; }}
tr.total td {{ font-weight: bold; border-top: 1px solid #1f2328; }}
</style></head><body>
<h1>QueueDesk report: {_esc(names.branch)}</h1>
<p><b>Range:</b> {_esc(result.range_text)} (branch time, {_esc(names.time_zone)})<br>
<b>Filters:</b> {_esc(names.filter_text(request))} &nbsp;&nbsp;
<b>Grouped by:</b> {_esc(group)}<br>
<b>Generated:</b> {result.generated_at.astimezone():%d %b %Y %H:%M} from the console's cache</p>
{note}
<table cellspacing=0 cellpadding=4>
<tr><td valign=top><h2>Key figures</h2>
<table cellspacing=0 cellpadding=1>{figure_rows}</table>
<h2>Pause time by reason</h2>
<table class=grid cellspacing=0>{pause_rows}</table></td>
<td valign=top><img src="chart:arrivals" width={CHART_WIDTH}></td>
<td valign=top><img src="chart:histogram" width={CHART_WIDTH}></td></tr>
</table>
<p><img src="chart:sla" width={2 * CHART_WIDTH}></p>
<h2>By {_esc(group)}</h2>
<table class=grid cellspacing=0 width=100%><tr><th>{_esc(GROUP_LABELS[request.group_by])}</th>
{head}</tr>{body}</table>
</body></html>
"""


def pdf_bytes(result: ReportResult) -> bytes:
    document = QTextDocument()
    for name, build in (
        ("arrivals", arrivals_chart),
        ("histogram", histogram_chart),
        ("sla", sla_chart),
    ):
        image = chart_image(build(result), CHART_SIZE)
        document.addResource(QTextDocument.ResourceType.ImageResource, QUrl(f"chart:{name}"), image)
    document.setHtml(report_html(result))
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setTitle(f"QueueDesk report: {result.names.branch}, {result.range_text}")
    writer.setCreator("QueueDesk")
    writer.setResolution(150)
    writer.setPageLayout(
        QPageLayout(
            QPageSize(QPageSize.PageSizeId.A4),
            QPageLayout.Orientation.Landscape,
            QMarginsF(12, 12, 12, 12),
            QPageLayout.Unit.Millimeter,
        )
    )
    # Laid out on the page's printable area (in 1/96 in, the document's unit); without
    # a page size, print_() would add margins of its own.
    area = writer.pageLayout().paintRect(QPageLayout.Unit.Point).size()
    document.setDocumentMargin(0)
    document.setPageSize(QSizeF(area.width() * 96 / 72, area.height() * 96 / 72))
    document.print_(writer)
    del writer  # finishes the PDF into the buffer
    buffer.close()
    return bytes(data.data())


def write_pdf(result: ReportResult, path: Path) -> None:
    _write(path, pdf_bytes(result))


# -- files -------------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then move it into place."""
    folder = path.parent
    if path.is_dir():
        raise ExportFailed(f"{path} is a folder; choose a file name.")
    if not folder.is_dir():
        raise ExportFailed(f"The folder {folder} does not exist; choose another place.")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    except OSError as exc:
        raise ExportFailed(f"Cannot write to {folder}: {exc.strerror or exc}.") from exc
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide a shared report from others
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise ExportFailed(f"Cannot write {path}: {exc.strerror or exc}.") from exc
