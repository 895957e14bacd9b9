"""The console's reports: the dashboard, the report window, its charts and its exports.

Every figure the window shows is checked against the cache's SQL report
(:meth:`LocalCache.report`), itself checked against the core reference in
``tests/server/test_reports_sql.py``. The cache holds three simulated days
(:mod:`tests.ui.report_support`), run offline through real commands.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import unicodedata
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCharts import QBarSeries
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QImage
from PySide6.QtWidgets import QApplication, QComboBox
from pytestqt.qtbot import QtBot

from core.kpi_rows import ALL, Filters
from desktop.bridge import SyncBridge
from desktop.charts import SERIES_COLOURS, arrivals_chart
from desktop.main_window import MainWindow
from desktop.report_data import COLUMNS, key_figures, shown
from desktop.reports_view import COMPARISON_HEADERS, ReportWindow
from desktop.session import SignedIn
from desktop.theme import apply_theme
from desktop.workspace import Workspace
from sync.client.api import Offline
from sync.client.cache import LocalCache
from sync.client.reports_api import BranchRow
from tests.ui.report_support import (
    ACCOUNTS,
    BRANCH,
    COUNTERS,
    LOANS,
    REPORTER,
    local,
    open_cache,
    simulate,
    user,
)

DAYS = [date(2024, 3, 29), date(2024, 3, 30), date(2024, 3, 31)]  # clocks go forward on the 31st
NOW = local(DAYS[-1], 12, 30)
WAIT_MS = 20_000
WORKER = [p for p in REPORTER if p != "reports.branch"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache file with the simulated days, made once for the module."""
    path = tmp_path_factory.mktemp("reports") / "cache.sqlite3"
    cache = open_cache(path)
    try:
        simulate(cache, DAYS, per_day=30)
    finally:
        cache.close()
    return path


@pytest.fixture
def cache(template: Path, tmp_path: Path) -> Iterator[LocalCache]:
    path = tmp_path / "cache.sqlite3"
    shutil.copyfile(template, path)
    opened = LocalCache.open(path, BRANCH)
    try:
        yield opened
    finally:
        opened.close()


def open_window(
    qtbot: QtBot,
    cache: LocalCache,
    permissions: list[str],
    tenant_permissions: list[str] | None = None,
) -> MainWindow:
    signed = SignedIn(user(permissions, tenant_permissions), "https://q.example", "acme", "robin")
    bridge = SyncBridge()
    workspace = Workspace(signed, BRANCH, cache, bridge, clock=lambda: NOW)
    window = MainWindow(signed, clock=lambda: NOW)
    qtbot.addWidget(window)
    window.attach(workspace, bridge, COUNTERS[0])
    window.show()
    qtbot.waitExposed(window)
    return window


def open_reports(qtbot: QtBot, window: MainWindow) -> ReportWindow:
    qtbot.mouseClick(window.reports_button, Qt.MouseButton.LeftButton)
    reports = window.reports_window
    assert reports is not None
    qtbot.addWidget(reports)
    qtbot.waitExposed(reports)
    return reports


def run(qtbot: QtBot, reports: ReportWindow) -> None:
    with qtbot.waitSignal(reports.report_ready, timeout=WAIT_MS):
        qtbot.mouseClick(reports.run_button, Qt.MouseButton.LeftButton)


def choose(box: QComboBox, data: object) -> None:
    index = box.findData(data)
    assert index >= 0, data
    box.setCurrentIndex(index)


def close_message(reports: ReportWindow) -> str:
    box = reports.message
    assert box is not None, "no message is shown"
    assert box.isVisible(), "the message is not shown"
    text = box.text()
    box.close()
    return text


# -- permissions ------------------------------------------------------------------------


def test_reports_are_offered_only_with_the_report_permission(
    qtbot: QtBot, cache: LocalCache
) -> None:
    window = open_window(qtbot, cache, WORKER)
    assert not window.reports_action.isVisible()
    assert window.reports_button.isHidden()
    assert window.lower_tabs.indexOf(window.dashboard) == -1
    window.activateWindow()
    qtbot.keyClick(
        window,
        Qt.Key.Key_R,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert window.reports_window is None
    assert window.open_reports() is None

    allowed = open_window(qtbot, cache, REPORTER)
    assert allowed.reports_action.isVisible()
    assert not allowed.reports_button.isHidden()
    assert allowed.lower_tabs.tabText(allowed.lower_tabs.indexOf(allowed.dashboard)) == "Dashboard"
    reports = open_reports(qtbot, allowed)
    assert reports.tabs.count() == 2  # no branch comparison without reports.tenant


# -- the report window ------------------------------------------------------------------


def test_the_report_shows_the_sql_figures(
    qtbot: QtBot, event_loop_qt: object, cache: LocalCache
) -> None:
    window = open_window(qtbot, cache, REPORTER)
    reports = open_reports(qtbot, window)
    reports.set_range(DAYS[0], DAYS[-1])
    choose(reports.group_by, "service")
    run(qtbot, reports)

    filters = Filters(DAYS[0], DAYS[-1])
    total = cache.report(filters=filters)[ALL]
    assert total.issued == 90
    assert total.served > 0
    assert total.no_show > 0
    assert total.transfers > 0
    assert reports.figures._rows == key_figures(total)
    assert reports.figures.cell("SLA attainment", "Value") == shown("rate", total.sla_attainment)
    by_service = cache.report(key="service", filters=filters)
    assert set(by_service) == {ACCOUNTS, LOANS}
    for service_id, label in ((ACCOUNTS, "A – Accounts"), (LOANS, "L – Loans")):
        for column in COLUMNS:
            expected = shown(column.kind, column.value(by_service[service_id]))
            assert reports.groups.cell(label, column.title) == expected, (label, column.title)
    assert reports.groups.cell("L – Loans", "SLA attainment") == "–"  # Loans has no target
    pauses = {r[0]: r[1] for r in reports.pauses._rows}
    assert pauses == {k: shown("seconds", v) for k, v in total.pause_seconds_by_reason.items()}

    result = reports.result
    assert result is not None
    assert sum(result.histogram.counts) == total.wait.count
    assert sum(result.arrivals_by_hour) * len(DAYS) == pytest.approx(total.issued)
    assert sum(result.served_by_hour) * len(DAYS) == pytest.approx(total.served)
    for day in DAYS:
        one = cache.report(filters=Filters(day, day))[ALL]
        assert result.sla_by_day[day] == one.sla_attainment
    assert [v.chart().title() for v in reports.chart_views] == [
        "Arrivals and served per hour (average of 3 days)",
        "Wait-time distribution",
        "SLA attainment per day",
    ]
    histogram = reports.chart_views[1].chart()
    assert [s.name() for s in histogram.series()][1] == "SLA target A: 10:00"

    choose(reports.service, ACCOUNTS)  # a filter: only Accounts, grouped by day
    choose(reports.group_by, "day")
    run(qtbot, reports)
    only = cache.report(key="day", filters=Filters(DAYS[0], DAYS[-1], service_id=ACCOUNTS))
    assert reports.groups.column("Issued")[:-1] == [shown("count", r.issued) for r in only.values()]
    assert reports.tabs.tabText(1) == "By day"
    assert "Service: A – Accounts" in reports.header.text()


def test_models_pass_the_model_tester(
    qtbot: QtBot, qtmodeltester: Any, event_loop_qt: object, cache: LocalCache
) -> None:
    window = open_window(qtbot, cache, REPORTER)
    reports = open_reports(qtbot, window)
    reports.set_range(DAYS[0], DAYS[-1])
    run(qtbot, reports)
    for model in (reports.figures, reports.pauses, reports.groups, window.dashboard.model):
        qtmodeltester.check(model)


def test_bad_input_is_told_in_a_message(
    qtbot: QtBot,
    event_loop_qt: object,
    cache: LocalCache,
    tmp_path: Path,
) -> None:
    window = open_window(qtbot, cache, REPORTER)
    reports = open_reports(qtbot, window)
    assert not reports.csv_button.isEnabled()  # nothing to export before a report

    reports.set_range(DAYS[-1], DAYS[0])
    with qtbot.waitSignal(reports.told, timeout=WAIT_MS):
        qtbot.mouseClick(reports.run_button, Qt.MouseButton.LeftButton)
    assert "before it starts" in close_message(reports)
    assert reports.result is None

    reports.set_range(date(2030, 1, 1), date(2030, 1, 7))  # nothing happened then
    run(qtbot, reports)
    assert "No tickets at Riverside (RIV)" in close_message(reports)
    result = reports.result
    assert result is not None
    assert result.empty
    assert reports.figures.cell("Mean wait", "Value") == "–"
    assert reports.groups.column("Day") == ["Total"]
    assert reports.export("pdf", tmp_path / "empty.pdf")  # an empty report still exports

    missing = tmp_path / "no such folder" / "report.csv"
    assert not reports.export("csv", missing)
    text = close_message(reports)
    assert "was not saved" in text
    assert "does not exist" in text
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not _writable(locked):  # root may write anywhere
            assert not reports.export("pdf", locked / "report.pdf")
            assert "Cannot write" in close_message(reports)
            assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)
    assert not reports.export("csv", tmp_path)
    assert "is a folder" in close_message(reports)


def _writable(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.write_text("")
    except OSError:
        return False
    probe.unlink()
    return True


# -- exports ----------------------------------------------------------------------------


def test_csv_reads_back_as_the_report(
    qtbot: QtBot,
    event_loop_qt: object,
    cache: LocalCache,
    tmp_path: Path,
) -> None:
    window = open_window(qtbot, cache, REPORTER)
    reports = open_reports(qtbot, window)
    reports.set_range(DAYS[0], DAYS[-1])
    choose(reports.group_by, "counter")
    run(qtbot, reports)
    reports.ask_export("csv")  # through the save dialog, as a person would
    dialog = reports.file_dialog
    assert dialog is not None
    assert dialog.selectedFiles()[0].endswith(
        "queuedesk-Riverside-RIV-2024-03-29-2024-03-31-by-counter.csv"
    )
    path = tmp_path / "report.csv"
    with qtbot.waitSignal(reports.exported, timeout=WAIT_MS):
        dialog.selectFile(str(path))
        dialog.accept()

    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    filters = Filters(DAYS[0], DAYS[-1])
    expected = dict(cache.report(key="counter", filters=filters))
    expected["total"] = cache.report(filters=filters)[ALL]
    assert [r["Key"] for r in rows] == [*sorted(COUNTERS), "total"]
    assert rows[0]["Counter"] == "Counter 1"
    assert rows[-1]["Counter"] == "Total"
    for row in rows:
        report = expected[row["Key"]]
        for column in COLUMNS:
            value = column.value(report)
            cell = row[column.title]
            if value is None:
                assert cell == "", (row["Key"], column.title)
            elif column.kind == "count":
                assert int(cell) == value, (row["Key"], column.title)
            else:
                assert float(cell) == pytest.approx(value, abs=1e-3), (row["Key"], column.title)
        for reason, seconds in report.pause_seconds_by_reason.items():
            assert float(row[f"Paused: {reason} (s)"]) == pytest.approx(seconds, abs=1e-3)


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs pdftotext (poppler-utils)")
def test_pdf_has_the_branch_the_range_and_the_figures(
    qtbot: QtBot,
    event_loop_qt: object,
    cache: LocalCache,
    tmp_path: Path,
) -> None:
    window = open_window(qtbot, cache, REPORTER)
    reports = open_reports(qtbot, window)
    reports.set_range(DAYS[0], DAYS[-1])
    choose(reports.group_by, "staff")
    run(qtbot, reports)
    path = tmp_path / "report.pdf"
    assert reports.export("pdf", path)
    assert path.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    text = unicodedata.normalize("NFKC", text)  # the PDF's fonts set "ff" as one ligature
    total = cache.report(filters=Filters(DAYS[0], DAYS[-1]))[ALL]
    flat = " ".join(text.split())
    assert "QueueDesk report: Riverside (RIV)" in flat
    assert "29 Mar 2024 – 31 Mar 2024" in flat
    assert "Europe/Berlin" in flat
    assert "Grouped by: staff member" in flat
    for name, value in key_figures(total):
        assert _line_with(text, name).endswith(value), name
    assert "Robin Teller" in text
    assert "Sam Clerk" in text
    assert "Arrivals and served per hour" in text or _has_images(path)


def _line_with(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.strip().startswith(name):
            return line.strip()
    raise AssertionError(f"{name!r} is not in the PDF")


def _has_images(path: Path) -> bool:
    if shutil.which("pdfimages") is None:
        return True
    listed = subprocess.run(
        ["pdfimages", "-list", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return len(listed.splitlines()) >= 2 + 3  # a header of two lines, then the three charts


# -- the dashboard ----------------------------------------------------------------------


def test_dashboard_shows_now_and_today_and_follows_events(qtbot: QtBot, cache: LocalCache) -> None:
    for minutes_ago, service in ((25, ACCOUNTS), (12, LOANS), (3, ACCOUNTS)):
        cache.issue_ticket(service, at=NOW - timedelta(minutes=minutes_ago))
    window = open_window(qtbot, cache, REPORTER)
    window.lower_tabs.setCurrentWidget(window.dashboard)
    dashboard = window.dashboard
    qtbot.waitUntil(lambda: dashboard.data is not None, timeout=WAIT_MS)
    today = cache.report(filters=Filters(DAYS[-1], DAYS[-1]))[ALL]
    assert today.issued == 33
    assert today.served > 0
    assert dashboard.figure("waiting") == "3"
    assert dashboard.figure("longest") == "25:00"
    assert dashboard.figure("counters") == "0 · 0"  # the simulated day closed both
    assert dashboard.figure("served") == shown("count", today.served)
    assert dashboard.figure("median") == shown("seconds", today.wait.p50)
    assert dashboard.figure("p90") == shown("seconds", today.wait.p90)
    assert dashboard.figure("sla") == shown("rate", today.sla_attainment)
    assert dashboard.service_row("A") == ("A – Accounts", "2", "25:00", "10:00")
    assert dashboard.service_row("L") == ("L – Loans", "1", "12:00", "none")

    workspace = window.workspace
    assert workspace is not None
    workspace.open_counter()
    workspace.call_next()  # the event arrives: the dashboard follows
    qtbot.waitUntil(lambda: dashboard.figure("waiting") == "2", timeout=WAIT_MS)
    assert dashboard.figure("counters") == "1 · 0"
    assert dashboard.figure("longest") == "12:00"


# -- comparing branches -----------------------------------------------------------------


def test_tenant_readers_compare_branches(
    qtbot: QtBot, event_loop_qt: object, cache: LocalCache
) -> None:
    asked: list[Filters] = []
    other = cache.report(filters=Filters(DAYS[0], DAYS[0]))[ALL]
    mine = cache.report(filters=Filters(DAYS[0], DAYS[-1]))[ALL]
    offline = False

    async def source(filters: Filters) -> list[BranchRow]:
        asked.append(filters)
        if offline:
            raise Offline("Cannot reach the QueueDesk server at q.example.")
        import uuid

        return [
            BranchRow(uuid.uuid4(), "RIV", "Riverside", "Europe/Berlin", mine),
            BranchRow(uuid.uuid4(), "HIL", "Hillside", "Europe/Berlin", other),
        ]

    window = open_window(qtbot, cache, REPORTER, tenant_permissions=["reports.tenant"])
    window.branch_comparison = source
    reports = open_reports(qtbot, window)
    assert reports.tabs.tabText(2) == "Branches"
    reports.set_range(DAYS[0], DAYS[-1])
    assert reports.compare_button is not None
    with qtbot.waitSignal(reports.comparison_ready, timeout=WAIT_MS):
        qtbot.mouseClick(reports.compare_button, Qt.MouseButton.LeftButton)
    assert asked == [Filters(DAYS[0], DAYS[-1])]
    assert reports.branches.HEADERS == COMPARISON_HEADERS
    assert reports.branches.column("Branch") == ["Riverside (RIV)", "Hillside (HIL)"]
    assert reports.branches.cell("Hillside (HIL)", "Issued") == shown("count", other.issued)
    assert reports.branches.cell("Riverside (RIV)", "p90 wait") == shown("seconds", mine.wait.p90)

    offline = True
    with qtbot.waitSignal(reports.told, timeout=WAIT_MS):
        qtbot.mouseClick(reports.compare_button, Qt.MouseButton.LeftButton)
    text = close_message(reports)
    assert "needs the server" in text
    assert "still work" in text
    assert reports.compare_button.isEnabled()


# -- the charts and the theme -----------------------------------------------------------


def _lightness(brush: QBrush) -> int:
    """The lightness a brush paints with (the mean of a gradient's stops)."""
    gradient = brush.gradient()
    if gradient is not None and brush.style() != Qt.BrushStyle.SolidPattern:
        stops = [color.lightness() for _at, color in gradient.stops()]
        return sum(stops) // len(stops)
    return brush.color().lightness()


def _mean_lightness(image: QImage) -> float:
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    seen = [
        image.pixelColor(x, y).lightness()
        for y in range(0, image.height(), 3)
        for x in range(0, image.width(), 3)
    ]
    return sum(seen) / len(seen)


def _assert_charts_look(reports: ReportWindow, theme: str) -> None:
    """Dark theme: dark charts with light text; light theme: the reverse."""
    dark = theme == "dark"

    def ground(value: float) -> bool:  # a background's lightness
        return value < 80 if dark else value > 200

    def ink(value: float) -> bool:  # a text's lightness
        return value > 170 if dark else value < 100

    for view in reports.chart_views:
        chart = view.chart()
        name = chart.title()
        assert ground(_lightness(chart.backgroundBrush())), (theme, name)
        assert ink(_lightness(chart.titleBrush())), (theme, name)
        axes = [a for a in chart.axes() if a.isVisible()]
        assert len(axes) == 2, name
        for axis in axes:
            assert ink(_lightness(axis.labelsBrush())), (theme, name, axis.titleText())
            assert ink(_lightness(axis.titleBrush())), (theme, name, axis.titleText())
            grid = axis.gridLinePen().color().lightness()
            assert abs(grid - _lightness(chart.backgroundBrush())) < 60, (theme, name)
        markers = chart.legend().markers()
        assert markers, name
        for marker in markers:
            assert ink(_lightness(marker.labelBrush())), (theme, name, marker.label())
        seen = _mean_lightness(view.grab().toImage())  # what the view actually paints
        assert ground(seen), (theme, name, seen)
    arrivals = reports.chart_views[0].chart().series()[0]
    assert isinstance(arrivals, QBarSeries)
    assert arrivals.barSets()[0].color() == SERIES_COLOURS["arrivals"][1 if dark else 0]


def test_the_charts_follow_the_theme(
    qtbot: QtBot, qapp: QApplication, event_loop_qt: object, cache: LocalCache
) -> None:
    before = qapp.styleSheet()
    try:
        apply_theme(qapp, "dark")
        window = open_window(qtbot, cache, REPORTER)
        reports = open_reports(qtbot, window)
        reports.set_range(DAYS[0], DAYS[-1])
        run(qtbot, reports)
        _assert_charts_look(reports, "dark")

        apply_theme(qapp, "light")  # the settings dialog switches it with the window open
        _assert_charts_look(reports, "light")
        apply_theme(qapp, "dark")
        _assert_charts_look(reports, "dark")

        run(qtbot, reports)  # a new report: new charts, still dark
        _assert_charts_look(reports, "dark")
        # The PDF's charts are printed on white whatever the console's theme.
        assert reports.result is not None
        assert _lightness(arrivals_chart(reports.result).backgroundBrush()) > 200
    finally:
        qapp.setStyleSheet(before)
