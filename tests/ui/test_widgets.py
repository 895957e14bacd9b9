"""The window's parts without a service: role gating, models, help, crash handling, settings.

A cache gets reference data by hand (what a first pull would bring), and the
window works on it exactly as it does offline.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from core.values import PriorityClass
from desktop.alerts import AlertItem
from desktop.bridge import Connection, SyncBridge
from desktop.logs import CrashReporter, setup_logging, stop_logging
from desktop.main_window import MainWindow
from desktop.session import SignedIn
from desktop.settings import ConsoleSettings
from desktop.settings_dialog import SettingsDialog
from desktop.theme import apply_theme, icon
from desktop.workspace import Workspace
from sync.client.auth import UserInfo
from sync.client.cache import LocalCache
from sync.client.connectivity import Alert, ConnectionState
from sync.protocol import BranchRef, CounterRef, ReferenceData, ServiceRef, StaffRef

BRANCH = str(uuid.uuid4())
SERVICES = [str(uuid.uuid4()), str(uuid.uuid4())]
COUNTER = str(uuid.uuid4())
STAFF = str(uuid.uuid4())
COUNTER_WORK = [
    "queue.view",
    "tickets.issue",
    "tickets.call",
    "tickets.serve",
    "tickets.transfer",
    "tickets.park",
    "tickets.cancel",
    "counters.operate",
]


def signed_in(permissions: list[str]) -> SignedIn:
    user = UserInfo.model_validate(
        {
            "id": STAFF,
            "username": "pat",
            "display_name": "Pat Teller",
            "tenant": {"id": str(uuid.uuid4()), "slug": "acme", "name": "Acme"},
            "permissions": permissions,
            "branches": [
                {"id": BRANCH, "code": "MAIN", "name": "Main", "permissions": permissions}
            ],
        }
    )
    return SignedIn(user, "https://queue.example.org", "acme", "pat")


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[LocalCache]:
    opened = LocalCache.open(tmp_path / "cache.sqlite3", BRANCH)
    opened.apply_reference(
        ReferenceData(
            version="v1",
            branch=BranchRef(id=BRANCH, name="Main", time_zone="Europe/Berlin"),
            services=[
                ServiceRef(id=SERVICES[0], code="A", name="Accounts", target_wait_s=600),
                ServiceRef(id=SERVICES[1], code="L", name="Loans"),
            ],
            counters=[CounterRef(id=COUNTER, name="Counter 1", work_profile=SERVICES)],
            staff=[StaffRef(id=STAFF, display_name="Pat Teller")],
            pause_reasons=["Break", "Lunch"],
            permissions=COUNTER_WORK,
        )
    )
    try:
        yield opened
    finally:
        opened.close()


def open_window(qtbot: QtBot, cache: LocalCache, permissions: list[str]) -> MainWindow:
    signed = signed_in(permissions)
    bridge = SyncBridge()
    workspace = Workspace(signed, BRANCH, cache, bridge)
    window = MainWindow(signed)
    qtbot.addWidget(window)
    window.attach(workspace, bridge, COUNTER)
    window.show()
    activate(qtbot, window)
    return window


def activate(qtbot: QtBot, window: MainWindow) -> None:
    """Make ``window`` the active window: its shortcuts answer key presses only then."""
    window.activateWindow()
    window.windowHandle().requestActivate()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)


def test_actions_a_role_does_not_allow_are_not_offered(qtbot: QtBot, cache: LocalCache) -> None:
    window = open_window(qtbot, cache, ["queue.view", "tickets.issue"])  # a reception desk
    shown = {name for name, b in window.buttons.buttons.items() if not b.isHidden()}
    assert shown == {"issue"}
    assert window.workspace is not None
    window.workspace.issue(SERVICES[0], PriorityClass.NORMAL)
    qtbot.keyClick(window, Qt.Key.Key_F2)  # the shortcut of a hidden action does nothing
    qtbot.keyClick(window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert window.snapshot is not None
    assert window.snapshot.counter is not None
    assert window.snapshot.counter.status == "closed"
    assert window.snapshot.current is None


def test_counter_work_is_offered_and_enabled_by_state(qtbot: QtBot, cache: LocalCache) -> None:
    window = open_window(qtbot, cache, COUNTER_WORK)
    buttons = window.buttons.buttons
    assert all(not b.isHidden() for b in buttons.values())
    assert "[F2]" in buttons["call_next"].text()
    enabled = {name for name, b in buttons.items() if b.isEnabled()}
    assert enabled == {"open", "issue"}
    qtbot.keyClick(window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    enabled = {name for name, b in buttons.items() if b.isEnabled()}
    assert enabled == {"pause", "close", "call_ticket", "issue"}  # nothing waits yet
    assert window.workspace is not None
    window.workspace.issue(SERVICES[1], PriorityClass.URGENT, "Ada Lovelace")
    assert buttons["call_next"].isEnabled()
    qtbot.keyClick(window, Qt.Key.Key_F2)
    # never synced, so no leased numbers: the cache numbers it, and warns about it
    assert window.ticket.number.text().startswith("L")
    [warning] = window.alerts.model.items
    assert warning.title == "Ticket number"
    assert "without a reserved number" in warning.message
    assert window.ticket.customer.text() == "Ada Lovelace"
    assert window.ticket.service.text() == "L – Loans"
    enabled = {name for name, b in buttons.items() if b.isEnabled()}
    assert enabled == {
        "recall", "start", "complete", "no_show", "transfer", "park", "cancel", "issue",
    }  # fmt: skip


def test_models_pass_the_model_tester(qtbot: QtBot, qtmodeltester, cache: LocalCache) -> None:  # type: ignore[no-untyped-def]
    window = open_window(qtbot, cache, COUNTER_WORK)
    assert window.workspace is not None
    for priority in (PriorityClass.NORMAL, PriorityClass.PRIORITY, PriorityClass.URGENT):
        window.workspace.issue(SERVICES[0], priority)
    window.workspace.open_counter()
    model = window.queues.models[SERVICES[0]]
    assert model.rowCount() == 3
    assert [model.index(r, 2).data() for r in range(3)] == ["Urgent", "Priority", "Normal"]
    qtmodeltester.check(model)
    qtmodeltester.check(window.counters.model_)
    window.alerts.model.set_items(
        [
            AlertItem("sync:1", "warning", "Connection lost", "Cannot reach", _now()),
            AlertItem("sync:2", "error", "Change refused", "A001 was called", _now()),
        ]
    )
    qtmodeltester.check(window.alerts.model)
    window.alerts.filter.setCurrentIndex(2)  # errors only
    assert [i.key for i in window.alerts.model.items] == ["sync:2"]


def _now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_help_overlay_lists_every_shortcut(qtbot: QtBot, cache: LocalCache) -> None:
    window = open_window(qtbot, cache, COUNTER_WORK)
    assert not window.help_overlay.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_F1)
    assert window.help_overlay.isVisible()
    texts = " ".join(
        label.text() for label in window.help_overlay.findChildren(type(window.user_label))
    )
    for shortcut in ("F2", "F5", "F9", "Shift+F9", "Ctrl+N", "Ctrl+Shift+W"):
        assert shortcut in texts
    qtbot.keyClick(window.help_overlay, Qt.Key.Key_Escape)
    assert not window.help_overlay.isVisible()


def test_bridge_delivers_sync_thread_news_on_the_ui_thread(qtbot: QtBot, cache: LocalCache) -> None:
    window = open_window(qtbot, cache, COUNTER_WORK)
    bridge = SyncBridge()
    window.attach(window.workspace, bridge, COUNTER)  # type: ignore[arg-type]
    window.workspace.open_counter()  # type: ignore[union-attr]  # one event in the outbox
    listener = bridge.listener()
    seen: list[bool] = []
    bridge.connection_changed.connect(
        lambda _s: seen.append(threading.current_thread() is threading.main_thread())
    )

    def sync_thread() -> None:
        listener.on_state(ConnectionState.OFFLINE)
        listener.on_alert(Alert("connection_lost", "warning", "Cannot reach the server"))
        listener.on_pending(1)

    with qtbot.waitSignal(bridge.pending_changed, timeout=5000):
        worker = threading.Thread(target=sync_thread)
        worker.start()
        worker.join()
    assert seen == [True]
    assert window.connection is Connection.OFFLINE
    assert window.banner.isVisible()
    assert window.status.outbox.text() == "Waiting to send: 1"
    assert "1 change(s) are kept" in window.banner.text.text()
    assert window.notifier.shown == [("Connection lost", "Cannot reach the server")]
    assert window.notifier.toast.isVisible()  # no system tray offscreen: the in-app toast
    window.close()
    assert not window.ticker.isActive()
    assert not window.notifier.toast.timer.isActive()
    assert not any(t.isActive() for t in window.findChildren(QTimer))


def test_a_repaired_cache_makes_the_window_read_it_again(qtbot: QtBot, cache: LocalCache) -> None:
    window = open_window(qtbot, cache, COUNTER_WORK)
    bridge = SyncBridge()
    window.attach(window.workspace, bridge, COUNTER)  # type: ignore[arg-type]
    listener = bridge.listener()
    shown = window.snapshot
    assert shown is not None
    with qtbot.waitSignal(bridge.applied, timeout=5000):
        worker = threading.Thread(target=listener.on_repaired)
        worker.start()
        worker.join()
    qtbot.waitUntil(lambda: window.snapshot is not shown, timeout=5000)  # read again
    window.close()


def test_unexpected_errors_are_logged_and_shown(
    qtbot: QtBot, private_home: Path, request: pytest.FixtureRequest
) -> None:
    log_path = setup_logging()
    request.addfinalizer(stop_logging)
    reporter = CrashReporter(log_path)
    try:
        raise RuntimeError("boom with Bearer abc.def.ghi")
    except RuntimeError as exc:
        reporter.excepthook(type(exc), exc, exc.__traceback__)
    qtbot.waitUntil(lambda: _crash_dialog() is not None, timeout=5000)
    dialog = _crash_dialog()
    assert dialog is not None
    assert str(log_path) in dialog.informativeText()
    dialog.close()
    text = log_path.read_text()
    assert "RuntimeError: boom" in text
    assert "Traceback" in text
    assert "abc.def.ghi" not in text


def _crash_dialog() -> QMessageBox | None:
    for widget in QApplication.topLevelWidgets():
        crash = isinstance(widget, QMessageBox) and widget.objectName() == "crashDialog"
        if crash and widget.isVisible():
            return widget  # type: ignore[return-value]
    return None


def test_settings_are_kept_in_qsettings(qtbot: QtBot, tmp_path: Path, cache: LocalCache) -> None:
    settings = ConsoleSettings.in_dir(tmp_path / "prefs")
    prefs = settings.load()
    assert prefs.theme == "light"
    dialog = SettingsDialog(prefs, cache.counters())
    qtbot.addWidget(dialog)
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    dialog.counter.setCurrentIndex(dialog.counter.findData(COUNTER))
    dialog.severity.setCurrentIndex(dialog.severity.findData("error"))
    dialog.offline_hours.setValue(24)
    settings.save(dialog.chosen())
    again = ConsoleSettings.in_dir(tmp_path / "prefs").load()
    assert (again.theme, again.counter_id, again.notify_min_severity) == ("dark", COUNTER, "error")
    assert again.offline_max_hours == 24
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    try:
        assert apply_theme(app, again.theme) == "dark"
        assert "#1f2328" in app.styleSheet()
    finally:
        app.setStyleSheet("")
    assert not icon("call-next").isNull()
