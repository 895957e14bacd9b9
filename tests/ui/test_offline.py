"""The service goes away mid-session and comes back; two consoles disagree."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt

from desktop.bridge import Connection
from desktop.main_window import MainWindow
from sync.client.credentials import InMemoryKeyring
from tests.ui.conftest import WAIT_MS, ConsoleRig, DemoServer
from tests.ui.helpers import press, sign_in_as


def choose_counter(window: MainWindow, name: str) -> None:
    window.counter.setCurrentIndex(window.counter.findText(name))
    assert window.workspace is not None
    assert window.workspace.counter_id


def queue_of(window: MainWindow) -> dict[str, list[str]]:
    assert window.workspace is not None
    waiting = window.workspace.cache.waiting_by_service()
    return {service: [t.number for t in tickets] for service, tickets in waiting.items()}


def counters_of(window: MainWindow) -> list[tuple[str, str, str | None]]:
    assert window.workspace is not None
    return [(c.name, c.status, c.current_ticket_number) for c in window.workspace.cache.counters()]


def issue_walk_ins(window: MainWindow, count: int) -> None:
    workspace = window.workspace
    assert workspace is not None
    accounts = next(s for s in workspace.cache.services() if s.code == "A")
    from core.values import PriorityClass

    for _ in range(count):
        workspace.issue(accounts.id, PriorityClass.NORMAL)


def test_offline_mid_session_then_back(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
) -> None:
    rig = make_console()
    window = sign_in_as(rig, demo_server, "staff1")
    bot = rig.qtbot
    choose_counter(window, "Counter 1")
    press(window, bot, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    issue_walk_ins(window, 4)
    bot.waitUntil(lambda: window.status.outbox_count == 0, timeout=WAIT_MS)
    assert not window.banner.isVisible()

    demo_server.stop()
    bot.waitUntil(lambda: window.banner.isVisible(), timeout=WAIT_MS)
    assert "OFFLINE" in window.banner.text.text()
    assert window.status.connection.text() == "Offline"
    # The state and the alert are two signals from the sync thread: wait for the second.
    bot.waitUntil(
        lambda: any(i.title == "Connection lost" for i in window.alerts.model.items),
        timeout=WAIT_MS,
    )

    # work goes on against the cache, and the outbox keeps it
    press(window, bot, Qt.Key.Key_F2)
    press(window, bot, Qt.Key.Key_F5)
    assert window.ticket.number.text() == "A001"
    assert "not yet synced" in window.ticket.state.text()
    press(window, bot, Qt.Key.Key_F6)
    assert window.handlers is not None
    assert window.handlers.dialog is not None
    window.handlers.dialog.accept()
    press(window, bot, Qt.Key.Key_F2)
    issue_walk_ins(window, 1)
    assert window.status.outbox_count >= 5
    assert window.status.outbox.text() == f"Waiting to send: {window.status.outbox_count}"
    assert window.banner.isVisible(), "still offline: the banner stays while reconnecting"

    demo_server.start()
    bot.waitUntil(lambda: window.connection is Connection.ONLINE, timeout=WAIT_MS)
    bot.waitUntil(lambda: window.status.outbox_count == 0, timeout=WAIT_MS)
    assert not window.banner.isVisible()
    assert window.status.connection.text() == "Online"
    assert "never" not in window.status.last_sync.text()

    # a second console signs in and sees the same queue and counters
    other = make_console(name="second")
    second = sign_in_as(other, demo_server, "staff2")
    bot.waitUntil(lambda: queue_of(second) == queue_of(window), timeout=WAIT_MS)
    assert counters_of(second) == counters_of(window)
    assert ("Counter 1", "open", "A002") in counters_of(second)


def test_conflict_shows_the_reason_and_the_authoritative_state(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
) -> None:
    a_rig, b_rig = make_console(name="a"), make_console(name="b")
    a = sign_in_as(a_rig, demo_server, "staff1")
    b = sign_in_as(b_rig, demo_server, "staff2")
    bot = a_rig.qtbot
    choose_counter(a, "Counter 1")
    choose_counter(b, "Counter 2")
    assert a.workspace is not None
    assert b.workspace is not None
    a.workspace.open_counter()
    b.workspace.open_counter()
    issue_walk_ins(a, 1)
    bot.waitUntil(
        lambda: queue_of(b) == queue_of(a) and a.status.outbox_count == 0, timeout=WAIT_MS
    )
    bot.waitUntil(lambda: b.status.outbox_count == 0, timeout=WAIT_MS)

    demo_server.stop()
    bot.waitUntil(lambda: a.offline and b.offline, timeout=WAIT_MS)
    a.workspace.call_next()  # both consoles call A001, each at its own counter
    b.workspace.call_next()
    assert a.ticket.number.text() == b.ticket.number.text() == "A001"

    demo_server.start()
    bot.waitUntil(
        lambda: a.status.outbox_count == 0 and b.status.outbox_count == 0, timeout=WAIT_MS
    )

    def refused(window: MainWindow) -> list[str]:
        return [i.message for i in window.alerts.model.items if i.title == "Change refused"]

    bot.waitUntil(lambda: bool(refused(a) or refused(b)), timeout=WAIT_MS)
    loser, winner = (a, b) if refused(a) else (b, a)
    assert not refused(winner)
    [message] = refused(loser)
    winner_counter = "Counter 1" if winner is a else "Counter 2"
    assert "A001 was already called at " + winner_counter in message
    # the loser shows the authoritative state: A001 is at the winner's counter, not here
    bot.waitUntil(lambda: loser.ticket.number.text() == "—", timeout=WAIT_MS)
    assert (winner_counter, "open", "A001") in counters_of(loser)
    assert loser.notifier.shown
    assert "A001" in loser.notifier.shown[-1][1]
    # acknowledging clears it
    loser.alerts.acknowledged.emit([i for i in loser.alerts.model.items if i.cache_id])
    bot.waitUntil(lambda: not refused(loser), timeout=WAIT_MS)
