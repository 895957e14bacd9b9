"""A whole counter session through the UI, with the keyboard and the mouse."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from PySide6.QtCore import Qt

from core.values import TransferPosition
from desktop.dialogs import (
    CompleteDialog,
    IssueTicketDialog,
    PauseDialog,
    TicketPreview,
    TransferDialog,
)
from desktop.main_window import MainWindow
from sync.client.credentials import InMemoryKeyring
from tests.ui.conftest import WAIT_MS, ConsoleRig, DemoServer
from tests.ui.helpers import press, sign_in_as, start


def counter_status(window: MainWindow) -> str:
    snap = window.snapshot
    assert snap is not None
    assert snap.counter is not None
    return snap.counter.status


def current(window: MainWindow) -> tuple[str, str] | None:
    snap = window.snapshot
    assert snap is not None
    return (snap.current.number, snap.current.status) if snap.current else None


def issue(window: MainWindow, rig: ConsoleRig, service_code: str) -> str:
    press(window, rig.qtbot, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    dialog = window.handlers.dialog if window.handlers else None
    assert isinstance(dialog, IssueTicketDialog)
    index = next(
        i
        for i in range(dialog.service.count())
        if dialog.service.itemText(i).startswith(service_code)
    )
    dialog.service.setCurrentIndex(index)
    rig.qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    preview = window.handlers.dialog if window.handlers else None
    assert isinstance(preview, TicketPreview)
    assert preview.number_label is not None
    number = preview.number_label.text()
    preview.accept()
    return number


def restart(rig: ConsoleRig, make_console: Callable[..., ConsoleRig]) -> ConsoleRig:
    """Close the console and start another on the same data dir (a remembered sign-in)."""
    done = asyncio.ensure_future(rig.console.shutdown())
    rig.qtbot.waitUntil(done.done, timeout=WAIT_MS)
    done.result()
    again = make_console()
    start(again.console, again.qtbot)
    assert again.console.dialog is None, "the remembered sign-in must not ask"
    return again


def test_full_counter_session(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
) -> None:
    rig = make_console()
    window = sign_in_as(rig, demo_server, "staff1")
    bot = rig.qtbot
    window.counter.setCurrentIndex(window.counter.findText("Counter 1"))  # serves A then L
    assert counter_status(window) == "closed"
    assert not window.buttons.buttons["call_next"].isEnabled()

    press(window, bot, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert counter_status(window) == "open"

    numbers = [issue(window, rig, code) for code in ("A", "A", "A", "L")]
    assert numbers == ["A001", "A002", "A003", "L001"]
    assert window.queues.models[window.snapshot.services[0].id].rowCount() == 3

    # call, start, complete with an outcome
    press(window, bot, Qt.Key.Key_F2)
    assert current(window) == ("A001", "called")
    press(window, bot, Qt.Key.Key_F5)
    assert current(window) == ("A001", "serving")
    assert window.ticket.number.text() == "A001"
    press(window, bot, Qt.Key.Key_F6)
    complete = window.handlers.dialog if window.handlers else None
    assert isinstance(complete, CompleteDialog)
    complete.outcome.setCurrentIndex(1)  # referred
    bot.mouseClick(complete.ok_button, Qt.MouseButton.LeftButton)
    assert current(window) is None
    assert window.ticket.number.text() == "—"

    # no-show
    press(window, bot, Qt.Key.Key_F2)
    assert current(window) == ("A002", "called")
    press(window, bot, Qt.Key.Key_F7)
    assert current(window) is None
    assert window.workspace is not None
    assert window.workspace.cache.ticket_by_number("A002").status == "no_show"

    # transfer A003 to the front of Loans: it is called before L001
    press(window, bot, Qt.Key.Key_F2)
    assert current(window) == ("A003", "called")
    press(window, bot, Qt.Key.Key_F8)
    transfer = window.handlers.dialog if window.handlers else None
    assert isinstance(transfer, TransferDialog)
    transfer.service.setCurrentIndex(transfer.service.findText("L – Loans"))
    transfer.findChild(type(transfer.positions.buttons()[0]), "position_front").setChecked(True)
    assert transfer.chosen()[1] is TransferPosition.FRONT
    bot.mouseClick(transfer.ok_button, Qt.MouseButton.LeftButton)
    assert current(window) is None
    press(window, bot, Qt.Key.Key_F2)
    assert current(window) == ("A003", "called")

    # park, restart the console (signed in from the keyring), and return
    press(window, bot, Qt.Key.Key_F9)
    assert current(window) is None
    assert window.parked.list.count() == 1
    rig = restart(rig, make_console)
    window = rig.wait_window()
    bot.waitUntil(lambda: window.parked.list.count() == 1, timeout=WAIT_MS)
    assert window.parked.list.item(0).text() == "A003"
    assert counter_status(window) == "open"
    press(window, bot, Qt.Key.Key_F9, Qt.KeyboardModifier.ShiftModifier)
    assert window.parked.list.count() == 0
    assert window.workspace.cache.ticket_by_number("A003").status == "waiting"

    # pause with a reason from the tenant's list, then resume
    press(window, bot, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    pause = window.handlers.dialog if window.handlers else None
    assert isinstance(pause, PauseDialog)
    assert pause.reason.findText("Lunch") >= 0
    pause.reason.setCurrentIndex(pause.reason.findText("Lunch"))
    bot.mouseClick(pause.ok_button, Qt.MouseButton.LeftButton)
    assert counter_status(window) == "paused"
    assert "Lunch" in window.counter_state.text()
    assert not window.buttons.buttons["call_next"].isEnabled()
    press(window, bot, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert counter_status(window) == "open"

    # everything reached the service
    bot.waitUntil(lambda: window.status.outbox_count == 0, timeout=WAIT_MS)
    assert window.status.outbox.text() == "Waiting to send: 0"


def test_refusal_is_said_not_raised(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
) -> None:
    rig = make_console()
    window = sign_in_as(rig, demo_server, "staff1")
    window.counter.setCurrentIndex(window.counter.findText("Counter 1"))
    press(window, rig.qtbot, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    # Nothing waits: call-next is disabled, and calling by number explains why not.
    assert not window.buttons.buttons["call_next"].isEnabled()
    assert window.handlers is not None
    window.handlers.call_ticket()
    dialog = window.handlers.dialog
    assert dialog is not None
    dialog.number.setText("A777")  # type: ignore[attr-defined]
    dialog.accept()
    assert "There is no ticket A777 today" in window.ticket.message.text()
