"""The report window: a range of branch-local days, filters and a grouping, the figures
as tables and charts, CSV and PDF export, and (tenant readers) a branch comparison.

Reports run on the local cache's SQL (:func:`desktop.report_data.build_report`), so
they work offline. The
branch comparison asks the service (``GET /reports/branches``) through the
``comparison`` source the console hands in. Every refusal (a range that ends
before it starts, an empty range, a file that cannot be written, the service out
of reach) is told in a message box, kept in :attr:`ReportWindow.message`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from core.kpi import GroupBy
from core.kpi_rows import Filters
from desktop.charts import arrivals_chart, chart_view, histogram_chart, sla_chart
from desktop.report_data import (
    GROUP_LABELS,
    BadRequest,
    Names,
    ReportRequest,
    ReportResult,
    build_report,
    key_figures,
    shown,
)
from desktop.report_export import ExportFailed, write_csv, write_pdf
from desktop.report_tables import COMPARISON_HEADERS, TextTableModel, comparison_rows, table
from desktop.theme import icon
from sync.client.api import ClientError, Offline
from sync.client.cache import LocalCache
from sync.client.reports_api import BranchRow

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ComparisonSource = Callable[[Filters], Awaitable[list[BranchRow]]]

PRESETS = ("Today", "Yesterday", "Last 7 days", "This month", "Last month", "Last 30 days")


def preset_range(name: str, today: date) -> tuple[date, date]:
    if name == "Yesterday":
        day = today - timedelta(days=1)
        return day, day
    if name == "Last 7 days":
        return today - timedelta(days=6), today
    if name == "Last 30 days":
        return today - timedelta(days=29), today
    if name == "This month":
        return today.replace(day=1), today
    if name == "Last month":
        last = today.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    return today, today


def _qdate(day: date) -> QDate:
    return QDate(day.year, day.month, day.day)


def _date(value: QDate) -> date:
    return date(value.year(), value.month(), value.day())


class ReportWindow(QMainWindow):
    """See the module docstring."""

    report_ready = Signal(object)  # ReportResult
    comparison_ready = Signal(object)  # list[BranchRow]
    exported = Signal(str)  # the path written
    told = Signal(str)  # the text of a message box just opened

    def __init__(
        self,
        cache: LocalCache,
        names: Names,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        comparison: ComparisonSource | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("reportWindow")
        self.setWindowTitle(f"Reports: {names.branch}")
        self.setWindowIcon(icon("reports"))
        self.cache, self.names, self._clock = cache, names, clock
        self.comparison_source = comparison
        self.result: ReportResult | None = None
        self.message: QMessageBox | None = None
        self.file_dialog: QFileDialog | None = None
        self.today = cache.local_day(clock())

        self.preset = QComboBox()
        self.preset.addItems([*PRESETS, "Custom"])
        self.preset.setObjectName("rangePreset")
        self.first = QDateEdit(_qdate(self.today))
        self.last = QDateEdit(_qdate(self.today))
        for edit, name in ((self.first, "fromDate"), (self.last, "toDate")):
            edit.setObjectName(name)
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("dd MMM yyyy")
            edit.dateChanged.connect(self._custom)
        self.preset.currentTextChanged.connect(self._use_preset)
        self.service = self._choice("serviceFilter", "All services", names.services)
        self.counter = self._choice("counterFilter", "All counters", names.counters)
        self.staff = self._choice("staffFilter", "All staff", names.staff)
        self.group_by = QComboBox()
        self.group_by.setObjectName("groupBy")
        for key, label in GROUP_LABELS.items():
            self.group_by.addItem(label, key)
        self.group_by.setCurrentIndex(self.group_by.findData("day"))
        self.run_button = QPushButton(icon("reports"), "Run report")
        self.run_button.setObjectName("primaryAction")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.run)
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.clicked.connect(lambda: self.ask_export("csv"))
        self.pdf_button = QPushButton("Export PDF…")
        self.pdf_button.clicked.connect(lambda: self.ask_export("pdf"))
        for button in (self.csv_button, self.pdf_button):
            button.setEnabled(False)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.run_button.click)

        filters = QGridLayout()
        filters.addWidget(QLabel("Range:"), 0, 0)
        filters.addWidget(self.preset, 0, 1)
        filters.addWidget(QLabel("From:"), 0, 2)
        filters.addWidget(self.first, 0, 3)
        filters.addWidget(QLabel("To:"), 0, 4)
        filters.addWidget(self.last, 0, 5)
        filters.addWidget(QLabel("Group by:"), 0, 6)
        filters.addWidget(self.group_by, 0, 7)
        filters.addWidget(QLabel("Service:"), 1, 0)
        filters.addWidget(self.service, 1, 1)
        filters.addWidget(QLabel("Counter:"), 1, 2)
        filters.addWidget(self.counter, 1, 3)
        filters.addWidget(QLabel("Staff:"), 1, 4)
        filters.addWidget(self.staff, 1, 5)
        filters.setColumnStretch(8, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.csv_button)
        buttons.addWidget(self.pdf_button)
        filters.addLayout(buttons, 1, 6, 1, 3, Qt.AlignmentFlag.AlignLeft)

        self.header = QLabel()
        self.header.setObjectName("reportHeader")
        self.header.setTextFormat(Qt.TextFormat.PlainText)
        self.figures = TextTableModel(("Figure", "Value"))
        self.pauses = TextTableModel(("Pause reason", "Time"))
        self.groups = TextTableModel()
        self.branches = TextTableModel(COMPARISON_HEADERS)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(table("keyFigures", self.figures, stretch=True), 5)
        left_layout.addWidget(table("pausesByReason", self.pauses, stretch=True), 1)
        left.setMinimumWidth(320)
        self.charts = QWidget()
        self.chart_grid = QGridLayout(self.charts)
        self.chart_grid.setContentsMargins(0, 0, 0, 0)
        overview = QSplitter(Qt.Orientation.Horizontal)
        overview.addWidget(left)
        overview.addWidget(self.charts)
        overview.setStretchFactor(1, 1)
        overview.setSizes([330, 900])
        self.tabs = QTabWidget()
        self.tabs.addTab(overview, "Overview")
        self.group_table = table("groupTable", self.groups)
        self.tabs.addTab(self.group_table, "By day")
        self.compare_button: QPushButton | None = None
        if comparison is not None:
            self.compare_button = QPushButton("Compare branches")
            self.compare_button.setObjectName("compareBranches")
            self.compare_button.clicked.connect(self.compare)
            self.compare_note = QLabel(
                "Every branch of the organisation, for the same days (from the server)."
            )
            page = QWidget()
            page_layout = QVBoxLayout(page)
            row = QHBoxLayout()
            row.addWidget(self.compare_button)
            row.addWidget(self.compare_note, 1)
            page_layout.addLayout(row)
            page_layout.addWidget(table("branchComparison", self.branches))
            self.tabs.addTab(page, "Branches")

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(filters)
        layout.addWidget(self.header)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.status = self.statusBar()
        self.status.showMessage("Choose the days and press Run report (Ctrl+Enter).")
        self.resize(1280, 820)

    def _choice(self, name: str, everything: str, options: dict[str, str]) -> QComboBox:
        box = QComboBox()
        box.setObjectName(name)
        box.addItem(everything, None)
        for key, label in sorted(options.items(), key=lambda kv: kv[1]):
            box.addItem(label, key)
        return box

    # -- the request ------------------------------------------------------------------------

    def _use_preset(self, name: str) -> None:
        if name == "Custom":
            return
        first, last = preset_range(name, self.today)
        for edit, day in ((self.first, first), (self.last, last)):
            edit.blockSignals(True)
            edit.setDate(_qdate(day))
            edit.blockSignals(False)

    def _custom(self, _value: QDate) -> None:
        self.preset.blockSignals(True)
        self.preset.setCurrentText("Custom")
        self.preset.blockSignals(False)

    def set_range(self, first: date, last: date) -> None:
        self.first.setDate(_qdate(first))
        self.last.setDate(_qdate(last))

    def request(self) -> ReportRequest:
        group: GroupBy = self.group_by.currentData()
        return ReportRequest(
            _date(self.first.date()),
            _date(self.last.date()),
            group,
            self.service.currentData(),
            self.counter.currentData(),
            self.staff.currentData(),
        )

    # -- running ----------------------------------------------------------------------------

    @asyncSlot()
    async def run(self) -> None:
        await self.run_report()

    async def run_report(self) -> ReportResult | None:
        request = self.request()
        try:
            request.check()
        except BadRequest as exc:
            self.tell(QMessageBox.Icon.Warning, "Check the days", str(exc))
            return None
        self.run_button.setEnabled(False)
        self.status.showMessage("Computing the report from this console's cache…")
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        # On the UI thread, after one turn of the loop paints the message: a year's
        # report is a few SQL aggregates (benchmarks/reports_local.py), and Python
        # code in a worker thread may run the garbage collector over Qt objects there.
        await asyncio.sleep(0)
        try:
            result = build_report(self.cache, self.names, request, self._clock())
        except Exception as exc:
            log.exception("the report failed")
            self.status.showMessage("The report failed.")
            self.tell(QMessageBox.Icon.Critical, "Report failed", f"The report failed: {exc}")
            return None
        finally:
            QApplication.restoreOverrideCursor()
            self.run_button.setEnabled(True)
        self.show_result(result)
        if result.empty:
            self.tell(
                QMessageBox.Icon.Information,
                "No tickets",
                f"No tickets at {self.names.branch} for {result.range_text} "
                f"({self.names.filter_text(request).lower()}). The report is empty; "
                "choose other days or filters.",
            )
        self.report_ready.emit(result)
        return result

    def show_result(self, result: ReportResult) -> None:
        self.result = result
        request = result.request
        self.header.setText(
            f"{self.names.branch}  ·  {result.range_text}  ·  {self.names.time_zone}  ·  "
            f"{self.names.filter_text(request)}"
        )
        self.figures.set_table(("Figure", "Value"), key_figures(result.total))
        pauses = result.total.pause_seconds_by_reason
        self.pauses.set_table(
            ("Pause reason", "Time"),
            [(reason, shown("seconds", s)) for reason, s in pauses.items()] or [("No pauses", "–")],
        )
        columns = result.columns()
        label = GROUP_LABELS[request.group_by]
        self.groups.set_table(
            (label, *(c.title for c in columns)),
            [
                (name, *(shown(c.kind, c.value(report)) for c in columns))
                for _key, name, report in result.rows()
            ],
        )
        self.tabs.setTabText(1, f"By {label.lower()}")
        while self.chart_grid.count():
            item = self.chart_grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.chart_views = [
            chart_view(arrivals_chart(result)),
            chart_view(histogram_chart(result)),
            chart_view(sla_chart(result)),
        ]
        self.chart_grid.addWidget(self.chart_views[0], 0, 0)
        self.chart_grid.addWidget(self.chart_views[1], 0, 1)
        self.chart_grid.addWidget(self.chart_views[2], 1, 0, 1, 2)
        for view in self.chart_views:  # the theme's palette now: each chart follows it
            view.ensurePolished()
        for button in (self.csv_button, self.pdf_button):
            button.setEnabled(True)
        at = result.generated_at.astimezone()
        self.status.showMessage(
            f"{result.total.issued:,} tickets issued · computed at {at:%H:%M:%S} "
            "from this console's cache (works offline)"
        )

    # -- exporting --------------------------------------------------------------------------

    def suggested_name(self, kind: str) -> str:
        result = self.result
        assert result is not None
        r = result.request
        branch = re.sub(r"[^A-Za-z0-9]+", "-", self.names.branch).strip("-")
        return f"queuedesk-{branch}-{r.first_day}-{r.last_day}-by-{r.group_by}.{kind}"

    def ask_export(self, kind: str) -> None:
        if self.result is None:
            self.tell(QMessageBox.Icon.Information, "Run the report first", "Run a report first.")
            return
        what = "CSV files (*.csv)" if kind == "csv" else "PDF documents (*.pdf)"
        dialog = QFileDialog(self, f"Export the report as {kind.upper()}")
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setNameFilter(what)
        dialog.setDefaultSuffix(kind)
        dialog.selectFile(str(Path.home() / self.suggested_name(kind)))
        dialog.fileSelected.connect(lambda path: self.export(kind, Path(path)))
        self.file_dialog = dialog
        dialog.open()

    def export(self, kind: str, path: Path) -> bool:
        """Write the shown report to ``path``; tells the user (and returns False) on failure."""
        result = self.result
        if result is None:
            self.tell(QMessageBox.Icon.Information, "Run the report first", "Run a report first.")
            return False
        try:
            (write_csv if kind == "csv" else write_pdf)(result, path)
        except ExportFailed as exc:
            text = f"The report was not saved. {exc}"
            self.tell(QMessageBox.Icon.Critical, "Export failed", text)
            return False
        self.status.showMessage(f"Saved {path}")
        self.exported.emit(str(path))
        return True

    # -- comparing branches -----------------------------------------------------------------

    @asyncSlot()
    async def compare(self) -> None:
        await self.run_comparison()

    async def run_comparison(self) -> list[BranchRow] | None:
        source = self.comparison_source
        if source is None:
            return None
        request = self.request()
        try:
            request.check()
        except BadRequest as exc:
            self.tell(QMessageBox.Icon.Warning, "Check the days", str(exc))
            return None
        button = self.compare_button
        if button is not None:
            button.setEnabled(False)
        try:
            rows = await source(Filters(request.first_day, request.last_day))
        except Offline as exc:
            self.tell(
                QMessageBox.Icon.Warning,
                "Server out of reach",
                f"The branch comparison needs the server. {exc} "
                "This branch's reports still work from the console's cache.",
            )
            return None
        except ClientError as exc:
            self.tell(QMessageBox.Icon.Critical, "Comparison refused", str(exc))
            return None
        finally:
            if button is not None:
                button.setEnabled(True)
        self.branches.set_table(COMPARISON_HEADERS, comparison_rows(rows))
        self.comparison_ready.emit(rows)
        return rows

    # -- telling ----------------------------------------------------------------------------

    def tell(self, kind: QMessageBox.Icon, title: str, text: str) -> QMessageBox:
        """A window-modal message that does not block the event loop."""
        if self.message is not None:
            self.message.close()
        box = QMessageBox(kind, title, text, QMessageBox.StandardButton.Ok, self)
        box.setObjectName("reportMessage")
        self.message = box
        box.open()
        self.told.emit(text)
        return box

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self.message is not None:
            self.message.close()
        super().closeEvent(event)
