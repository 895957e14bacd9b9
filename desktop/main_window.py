"""The console's main window: branch and counter, the current ticket and its actions,
the live queues, the counters overview, alerts, the offline banner and the status bar.

The window shows a :class:`~desktop.workspace.Workspace`; it re-reads the cache
(:meth:`MainWindow.refresh`) after each local command and whenever the sync
thread says something changed, coalescing bursts into one read per event-loop
turn. It never decides anything itself: actions go to the workspace.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QResizeEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.errors import QueueDeskError
from desktop import formatting as fmt
from desktop.actions import CounterActions
from desktop.alerts import AlertItem, AlertsPanel, Notifier
from desktop.bridge import Connection, SyncAlert, SyncBridge
from desktop.counter_panel import ActionButtons, CurrentTicketPanel, HelpOverlay, ParkedList
from desktop.dashboard import Dashboard, DashboardData
from desktop.handlers import ActionHandlers
from desktop.queue_view import CountersTable, QueueTabs, section
from desktop.session import SignedIn
from desktop.status import ConnectionStatus, OfflineBanner
from desktop.theme import icon
from desktop.workspace import NoTicket, Snapshot, Workspace

if TYPE_CHECKING:  # the report window and Qt Charts load when first opened
    from desktop.reports_view import ComparisonSource, ReportWindow

Clock = Callable[[], datetime]


class MainWindow(QMainWindow):
    branch_chosen = Signal(str)
    counter_chosen = Signal(str)
    sign_out_requested = Signal()
    settings_requested = Signal()
    sign_in_requested = Signal()  # signed out of the server while working: sign in again
    closed = Signal()

    def __init__(self, signed_in: SignedIn, clock: Clock = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle("QueueDesk")
        self.setWindowIcon(icon("queuedesk"))
        self.signed_in = signed_in
        self.workspace: Workspace | None = None
        self.handlers: ActionHandlers | None = None
        self.snapshot: Snapshot | None = None
        self.connection = Connection.NOT_SYNCING
        self._lost = False  # offline, and not yet back (reconnecting counts as still lost)
        self._sync_alerts: list[AlertItem] = []
        self._seen_alerts: set[str] | None = None

        self.counter_actions = CounterActions(self)
        help_action = QAction(icon("help"), "Keyboard help", self)
        help_action.setShortcut(QKeySequence("F1"))
        help_action.triggered.connect(self._toggle_help)
        self.addAction(help_action)
        self.counter_actions.failed.connect(self.say)
        self.reports_action = QAction(icon("reports"), "Reports…", self)
        self.reports_action.setObjectName("action_reports")
        self.reports_action.setShortcut(QKeySequence("Ctrl+Shift+R"))
        self.reports_action.setToolTip("Branch reports, charts and exports (Ctrl+Shift+R)")
        self.reports_action.triggered.connect(self.open_reports)
        self.reports_action.setVisible(False)
        self.addAction(self.reports_action)
        self.branch_comparison: ComparisonSource | None = None  # set by the console
        self.reports_window: ReportWindow | None = None

        self.banner = OfflineBanner()
        self.banner.sign_in_requested.connect(self.sign_in_requested)
        self.banner.retry_requested.connect(self._retry)
        self.branch = QComboBox()
        self.branch.setObjectName("branchChoice")
        self.counter = QComboBox()
        self.counter.setObjectName("counterChoice")
        self.counter.setMinimumContentsLength(12)
        self.counter_state = QLabel()
        self.counter_state.setObjectName("counterState")
        self.user_label = QLabel()
        help_button = QPushButton(icon("help"), "Help  [F1]")
        help_button.clicked.connect(help_action.trigger)
        self.reports_button = QPushButton(icon("reports"), "Reports")
        self.reports_button.setObjectName("reportsButton")
        self.reports_button.setToolTip(self.reports_action.toolTip())
        self.reports_button.clicked.connect(self.reports_action.trigger)
        self.reports_button.hide()
        settings_button = QPushButton(icon("settings"), "Settings")
        settings_button.clicked.connect(self.settings_requested)
        sign_out = QPushButton(icon("sign-out"), "Sign out")
        sign_out.setObjectName("signOut")
        sign_out.clicked.connect(self.sign_out_requested)
        self.sign_out_button = sign_out
        for button in (self.reports_button, help_button, settings_button, sign_out):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        top = QHBoxLayout()
        top.addWidget(QLabel("Branch:"))
        top.addWidget(self.branch)
        top.addWidget(QLabel("Counter:"))
        top.addWidget(self.counter)
        top.addWidget(self.counter_state)
        top.addStretch(1)
        top.addWidget(self.user_label)
        top.addWidget(self.reports_button)
        top.addWidget(help_button)
        top.addWidget(settings_button)
        top.addWidget(sign_out)

        self.ticket = CurrentTicketPanel(clock)
        self.buttons = ActionButtons(self.counter_actions.actions)
        self.parked = ParkedList()
        self.parked.hide()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.ticket)
        left_layout.addWidget(self.buttons)
        left_layout.addWidget(self.parked)
        left_layout.addStretch(1)
        left.setMinimumWidth(400)

        self.queues = QueueTabs(clock)
        self.queues.call_requested.connect(self._call_ticket)
        self.queues.cancel_requested.connect(self._cancel_ticket)
        self.counters = CountersTable()
        self.alerts = AlertsPanel()
        self.alerts.acknowledged.connect(self._acknowledge)
        self.lower_tabs = QTabWidget()
        self.lower_tabs.addTab(self.counters, "Counters")
        self.lower_tabs.addTab(self.alerts, "Alerts")
        self.dashboard = Dashboard(clock)
        self.lower_tabs.currentChanged.connect(lambda _i: self._refresh_dashboard())
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(section("Waiting", self.queues))
        right.addWidget(self.lower_tabs)
        right.setSizes([500, 260])
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(left)
        body.addWidget(right)
        body.setStretchFactor(1, 1)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.banner)
        layout.addLayout(top)
        layout.addWidget(body, 1)
        self.setCentralWidget(central)
        self.status = ConnectionStatus(self.statusBar())
        self.help_overlay = HelpOverlay(central)
        self.notifier = Notifier(self)

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self.refresh)
        self.ticker = QTimer(self)
        self.ticker.setInterval(1000)
        self.ticker.timeout.connect(self._tick)
        # The dashboard runs today's report: at most a few times a second, and only
        # while it is shown, so counter actions never wait for it.
        self._dashboard_timer = QTimer(self)
        self._dashboard_timer.setSingleShot(True)
        self._dashboard_timer.setInterval(250)
        self._dashboard_timer.timeout.connect(self._refresh_dashboard)
        self.counter.currentIndexChanged.connect(self._counter_changed)
        self.set_signed_in(signed_in)
        self.resize(1280, 800)

    # -- wiring ------------------------------------------------------------------------

    def set_signed_in(self, signed_in: SignedIn) -> None:
        self.signed_in = signed_in
        mode = "  (offline unlock)" if signed_in.offline else ""
        self.user_label.setText(f"{signed_in.user.display_name}{mode}")
        self.status.user.setText(f"{signed_in.user.display_name} · {signed_in.tenant}")
        self.branch.blockSignals(True)
        self.branch.clear()
        for branch in signed_in.user.branches:
            if "queue.view" in branch.permissions:
                self.branch.addItem(f"{branch.name} ({branch.code})", str(branch.id))
        self.branch.blockSignals(False)
        self._show_banner()

    def attach(self, workspace: Workspace, bridge: SyncBridge, counter_id: str = "") -> None:
        """Show ``workspace``; listen to the sync thread through ``bridge``."""
        if self.workspace is not None:  # edits applied twice would show rows twice
            self.workspace.queues_edited.disconnect(self.queues.edit)
        gc.unfreeze()  # what the last workspace held may be collected again (see below)
        self.workspace = workspace
        self.handlers = ActionHandlers(self, workspace)
        self.queues.source = workspace.live
        workspace.queues_edited.connect(self.queues.edit)
        workspace.changed.connect(self.refresh)  # at once: the key press shows its effect
        bridge.applied.connect(self.schedule_refresh)
        bridge.rejected.connect(self.schedule_refresh)
        bridge.pending_changed.connect(self._pending)
        bridge.synced.connect(self._synced)
        bridge.connection_changed.connect(self.set_connection)
        bridge.alert_raised.connect(self.add_sync_alert)
        index = self.branch.findData(workspace.branch_id)
        self.branch.blockSignals(True)
        self.branch.setCurrentIndex(index)
        self.branch.blockSignals(False)
        self.branch.currentIndexChanged.connect(
            lambda _i: self.branch_chosen.emit(str(self.branch.currentData()))
        )
        workspace.counter_id = counter_id or None
        self.refresh()
        # The cache's branch state and the queues just read live as long as the window:
        # out of the collector's reach, a collection during a key press walks thousands
        # of objects instead of hundreds of thousands.
        gc.freeze()
        self.ticker.start()

    def schedule_refresh(self) -> None:
        self._refresh_timer.start()

    # -- showing the snapshot -----------------------------------------------------------

    def refresh(self) -> None:
        workspace = self.workspace
        if workspace is None:
            return
        snap = workspace.snapshot()
        self.snapshot = snap
        self._fill_counters(snap)
        services = {s.id: s for s in snap.services}
        self.ticket.show_ticket(snap.current, services)
        counter = snap.counter
        if counter is None:
            self.counter_state.setText("Choose your counter")
        else:
            reason = f" ({counter.pause_reason})" if counter.pause_reason else ""
            self.counter_state.setText(f"{fmt.status(counter.status)}{reason}")
        self.queues.show_queues(snap.services, snap.waiting)
        codes = {s.id: s.code for s in snap.services}
        self.counters.model_.set_counters(snap.counters, snap.staff_names, codes)
        self.parked.show_tickets(snap.parked)
        self.status.set_outbox(snap.outbox)
        self.status.set_last_sync(snap.last_synced)
        self._show_alerts(snap)
        self.counter_actions.update(workspace, snap)
        self.queues.can_call = self.counter_actions.actions["call_ticket"].isEnabled()
        self.queues.can_cancel = self.counter_actions.actions["cancel"].isVisible()
        self._show_report_access()
        if self.dashboard.isVisible():
            self._dashboard_timer.start()
        self._show_banner()

    # -- reports --------------------------------------------------------------------------

    @property
    def may_report(self) -> bool:
        return self.workspace is not None and self.workspace.may("reports.branch")

    @property
    def may_compare(self) -> bool:
        return "reports.tenant" in self.signed_in.user.permissions

    def _show_report_access(self) -> None:
        allowed = self.may_report
        self.reports_action.setVisible(allowed)
        self.reports_action.setEnabled(allowed)
        self.reports_button.setVisible(allowed)
        at = self.lower_tabs.indexOf(self.dashboard)
        if allowed and at < 0:
            self.lower_tabs.insertTab(0, self.dashboard, "Dashboard")
        elif not allowed and at >= 0:
            self.lower_tabs.removeTab(at)
        if not allowed:
            self._drop_reports()

    def _refresh_dashboard(self) -> None:
        workspace, snap = self.workspace, self.snapshot
        if workspace is None or snap is None or not self.may_report:
            return
        if not self.dashboard.isVisible():
            return
        today = workspace.today_report()
        data = DashboardData.of(snap.services, snap.waiting, snap.counters, today)
        self.dashboard.show_data(data)

    def _drop_reports(self) -> None:
        """Close the report window and have Qt delete it.

        It is a top-level window of its own: left to Python, it could outlive the
        application and crash Qt's teardown at exit.
        """
        window, self.reports_window = self.reports_window, None
        if window is not None:
            window.close()
            window.deleteLater()

    def open_reports(self) -> ReportWindow | None:
        """Open (or raise) the report window of the branch; None when not allowed."""
        workspace = self.workspace
        if workspace is None or not self.may_report:
            return None
        reference = workspace.reference()
        if reference is None:
            self.say("Reports need the branch's data: connect to the server once first.")
            return None
        from desktop.report_data import Names
        from desktop.reports_view import ReportWindow

        window = self.reports_window
        if window is None or window.cache is not workspace.cache:
            self._drop_reports()
            branch = self.branch.currentText() or reference.branch.name
            source = self.branch_comparison if self.may_compare else None
            window = ReportWindow(workspace.cache, Names.of(branch, reference), comparison=source)
            self.reports_window = window
        window.show()
        window.raise_()
        window.activateWindow()
        return window

    def _fill_counters(self, snap: Snapshot) -> None:
        wanted = [(c.name, c.id) for c in snap.counters]
        have = [
            (self.counter.itemText(i), self.counter.itemData(i))
            for i in range(self.counter.count())
        ]
        if wanted != have[1:]:
            self.counter.blockSignals(True)
            self.counter.clear()
            self.counter.addItem("— choose —", "")
            for name, counter_id in wanted:
                self.counter.addItem(name, counter_id)
            self.counter.blockSignals(False)
        current = self.workspace.counter_id if self.workspace else None
        index = max(0, self.counter.findData(current or ""))
        if index != self.counter.currentIndex():
            self.counter.blockSignals(True)
            self.counter.setCurrentIndex(index)
            self.counter.blockSignals(False)

    def _counter_changed(self, _index: int) -> None:
        if self.workspace is None:
            return
        counter_id = str(self.counter.currentData() or "")
        self.workspace.counter_id = counter_id or None
        self.counter_chosen.emit(counter_id)
        self.say("")
        self.refresh()

    def _show_alerts(self, snap: Snapshot) -> None:
        items = [AlertItem.from_cache(a) for a in snap.alerts] + self._sync_alerts
        keys = {i.key for i in items}
        if self._seen_alerts is None:
            self._seen_alerts = keys  # alerts from before this start: listed, not announced
        for item in items:
            if item.key not in self._seen_alerts and item.cache_id is not None:
                self.notifier.notify(item.title, item.message, item.severity)
        self._seen_alerts |= keys
        self.alerts.model.set_items(items)
        count = len(items)
        title = f"Alerts ({count})" if count else "Alerts"
        at = self.lower_tabs.indexOf(self.alerts)  # after the dashboard, when it is shown
        if self.lower_tabs.tabText(at) != title:  # a new title lays the tab widget out again
            self.lower_tabs.setTabText(at, title)

    def add_sync_alert(self, alert: SyncAlert) -> None:
        if alert.kind == "rejected":
            return  # the cache keeps rejections as alerts of its own; shown from there
        item = AlertItem.from_sync(len(self._sync_alerts) + 1, alert)
        self._sync_alerts.append(item)
        self._seen_alerts = (self._seen_alerts or set()) | {item.key}
        self.notifier.notify(item.title, item.message, item.severity)
        self.schedule_refresh()

    def add_notice(self, title: str, message: str, severity: str = "info") -> None:
        """An alert of the console itself (e.g. no keyring), listed and announced once."""
        key = f"notice:{len(self._sync_alerts) + 1}"
        item = AlertItem(key, severity, title, message, datetime.now(UTC))
        self._sync_alerts.append(item)
        self._seen_alerts = (self._seen_alerts or set()) | {key}
        self.notifier.notify(title, message, severity)
        self.refresh()

    def _acknowledge(self, items: list[AlertItem]) -> None:
        keys = {i.key for i in items}
        self._sync_alerts = [a for a in self._sync_alerts if a.key not in keys]
        cache_ids = [i.cache_id for i in items if i.cache_id is not None]
        if self.workspace is not None and cache_ids:
            self.workspace.acknowledge(cache_ids)
        self.schedule_refresh()

    # -- connection ---------------------------------------------------------------------

    def set_connection(self, value: str) -> None:
        state = Connection(value)
        self.connection = state
        if state is Connection.OFFLINE:
            self._lost = True
        elif state is not Connection.RECONNECTING:
            self._lost = False
        self.status.set_connection(Connection.OFFLINE if self._lost else state)
        self._show_banner()

    @property
    def offline(self) -> bool:
        return self._lost

    def _show_banner(self) -> None:
        if self._lost:
            state = Connection.OFFLINE
        elif self.connection is Connection.SIGNED_OUT:
            state = Connection.SIGNED_OUT
        else:
            state = self.connection
        pending = self.snapshot.outbox if self.snapshot else 0
        until = self.signed_in.offline_until if self.signed_in.offline else None
        self.banner.show_state(state, until, pending)

    def _pending(self, count: int) -> None:
        self.status.set_outbox(count)
        self.schedule_refresh()

    def _synced(self, at: datetime) -> None:
        self.status.set_last_sync(at)

    def _retry(self) -> None:
        if self.workspace is not None and self.workspace.sync is not None:
            self.workspace.sync.retry_now()

    # -- misc ---------------------------------------------------------------------------

    def say(self, text: str, error: bool = True) -> None:
        self.ticket.say(text, error)

    def _call_ticket(self, ticket_id: str) -> None:
        if self.handlers is None:
            return
        try:
            self.handlers.call_id(ticket_id)
        except (QueueDeskError, NoTicket) as exc:
            self.say(str(exc))

    def _cancel_ticket(self, ticket_id: str) -> None:
        if self.handlers is not None:
            self.handlers.cancel(ticket_id)

    def _tick(self) -> None:
        self.ticket.tick()
        self.queues.tick()
        self.dashboard.tick()

    def _toggle_help(self) -> None:
        self.help_overlay.toggle()

    def stop_timers(self) -> None:
        self.ticker.stop()
        self._refresh_timer.stop()
        self._dashboard_timer.stop()
        self.notifier.close()
        self._drop_reports()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.notifier.toast.place()
        if self.help_overlay.isVisible():
            self.help_overlay.hide()
            self.help_overlay.toggle()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.stop_timers()
        super().closeEvent(event)
        self.closed.emit()
