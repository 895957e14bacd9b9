"""Signing in against the real service: password, remembered, sign-out, errors, offline."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from desktop.app import start_console
from desktop.bridge import Connection
from desktop.gui_gc import GuiCollector
from desktop.main_window import MainWindow
from sync.client.credentials import InMemoryKeyring, MemoryCredentialStore
from tests.server.live import free_port
from tests.ui.conftest import WAIT_MS, ConsoleRig, DemoServer
from tests.ui.helpers import click, fill_sign_in, open_sign_in, sign_in_as, start, submit

NO_KEYRING = "No usable system keyring was found (null); sign-ins will not be remembered."


def refresh_entries(keyring: InMemoryKeyring) -> list[str]:
    return [user for (_service, user) in keyring.entries if user.startswith("refresh:")]


def shut(rig: ConsoleRig) -> None:
    done = asyncio.ensure_future(rig.console.shutdown())
    rig.qtbot.waitUntil(done.done, timeout=WAIT_MS)


def test_sign_in_opens_the_branch(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
) -> None:
    rig = make_console()
    window = sign_in_as(rig, demo_server, "staff1")
    assert window.signed_in.user.username == "staff1"
    assert window.workspace is not None
    assert window.workspace.branch_id == demo_server.demo.branch_id
    assert [window.counter.itemText(i) for i in range(1, window.counter.count())] == [
        "Counter 1",
        "Counter 2",
        "Counter 3",
    ]
    rig.qtbot.waitUntil(lambda: window.status.connection.text() == "Online", timeout=WAIT_MS)
    assert not window.banner.isVisible()


def test_syncing_starts_once_the_window_has_painted(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
) -> None:
    """The branch opens from the cache with the window; its sync thread starts after the
    window's first paint, so the two do not share the interpreter during it."""
    rig = make_console()
    at_show: list[tuple[bool, bool, bool]] = []

    def shown(window: MainWindow) -> None:
        workspace, waiting = rig.console.workspace, rig.console.sync_start
        at_show.append(
            (
                workspace is not None and workspace.sync is None,
                waiting is not None and waiting.pending,
                window.windowHandle() is not None and window.windowHandle().isExposed(),
            )
        )

    rig.console.window_shown.connect(shown)
    window = sign_in_as(rig, demo_server, "staff1")
    assert at_show == [(True, True, False)]  # open, not syncing, not yet painted
    workspace = rig.console.workspace
    assert workspace is not None
    assert workspace.sync is not None
    assert window.windowHandle().isExposed()
    rig.qtbot.waitUntil(lambda: window.status.connection.text() == "Online", timeout=WAIT_MS)
    shut(rig)


def test_remembered_sign_in_is_silent_and_sign_out_forgets_it(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
) -> None:
    first = make_console()
    sign_in_as(first, demo_server, "staff1", remember=True)
    assert len(refresh_entries(memory_keyring)) == 1
    shut(first)

    again = make_console()  # same data dir: the preferences say who signed in last
    start(again.console, again.qtbot)
    assert again.console.dialog is None, "a remembered sign-in must not ask"
    window = again.wait_window()
    assert window.signed_in.user.username == "staff1"
    assert not window.signed_in.offline

    click(window.sign_out_button, again.qtbot)
    again.qtbot.waitUntil(lambda: again.console.dialog is not None, timeout=WAIT_MS)
    assert again.console.window is None
    assert refresh_entries(memory_keyring) == []
    shut(again)

    third = make_console()
    start(third.console, third.qtbot)
    assert third.console.dialog is not None, "after signing out the console asks again"


def test_not_remembered_asks_next_time(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
) -> None:
    first = make_console()
    sign_in_as(first, demo_server, "staff1", remember=False)
    assert refresh_entries(memory_keyring) == []
    shut(first)
    again = make_console()
    start(again.console, again.qtbot)
    assert again.console.dialog is not None


def test_wrong_password_says_so(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
) -> None:
    rig = make_console()
    dialog = open_sign_in(rig)
    fill_sign_in(
        dialog,
        rig.qtbot,
        server=demo_server.url,
        tenant=demo_server.demo.tenant,
        username="staff1",
        password="not the password",
    )
    submit(dialog, rig.qtbot)
    assert dialog.error.text() == "The tenant, username or password is not correct."
    assert not dialog.error.isHidden()
    assert rig.console.window is None


def test_unreachable_server_says_so(
    memory_keyring: InMemoryKeyring, make_console: Callable[..., ConsoleRig]
) -> None:
    rig = make_console()
    dialog = open_sign_in(rig)
    fill_sign_in(
        dialog,
        rig.qtbot,
        server=f"http://127.0.0.1:{free_port()}",
        tenant="demo",
        username="staff1",
        password="whatever",
    )
    submit(dialog, rig.qtbot)
    text = dialog.error.text()
    assert "Cannot reach the QueueDesk server at 127.0.0.1" in text
    assert "has not signed in online on this computer yet" in text
    assert rig.console.window is None


def test_offline_unlock_and_its_expiry(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
) -> None:
    password = demo_server.demo.passwords["staff1"]
    first = make_console()
    sign_in_as(first, demo_server, "staff1", remember=True)
    shut(first)
    demo_server.stop()

    rig = make_console()
    dialog = open_sign_in(rig, "the remembered sign-in cannot resume without the server")
    assert "Enter your password to work offline" in dialog.error.text()

    fill_sign_in(dialog, rig.qtbot, password="wrong password")
    submit(dialog, rig.qtbot)
    assert dialog.error.text() == "The password is not correct."

    # 73 hours later the allowance (72 h since the last online sign-in) is over
    real = rig.console.auth.clock
    rig.console.auth.clock = lambda: real() + timedelta(hours=73)
    fill_sign_in(dialog, rig.qtbot, password=password)
    submit(dialog, rig.qtbot)
    assert "more than 72 hours ago" in dialog.error.text()
    assert rig.console.window is None

    rig.console.auth.clock = real
    fill_sign_in(dialog, rig.qtbot, password=password)
    submit(dialog, rig.qtbot)
    window = rig.wait_window()
    assert window.signed_in.offline
    assert "offline unlock" in window.user_label.text()
    assert window.banner.isVisible()
    assert "WORKING OFFLINE" in window.banner.text.text()
    assert any(i.title == "Working offline" for i in window.alerts.model.items)
    # the permissions of the last online sign-in: counter work is offered
    assert window.counter_actions.actions["open"].isVisible()
    rig.qtbot.waitUntil(lambda: window.connection is Connection.OFFLINE, timeout=WAIT_MS)

    # the service comes back: the remembered sign-in resumes by itself
    demo_server.start()
    rig.qtbot.waitUntil(lambda: not window.signed_in.offline, timeout=WAIT_MS)
    rig.qtbot.waitUntil(lambda: window.connection is Connection.ONLINE, timeout=WAIT_MS)
    assert not window.banner.isVisible()


def test_no_keyring_mode_says_so_once_and_keeps_nothing(
    demo_server: DemoServer, make_console: Callable[..., ConsoleRig]
) -> None:
    store = MemoryCredentialStore()
    rig = make_console(store=store, keyring_warning=NO_KEYRING)
    dialog = open_sign_in(rig)
    assert NO_KEYRING in dialog.notice.text()
    assert not dialog.remember.isEnabled()
    assert not dialog.remember.isChecked()
    window = sign_in_as_started(rig, demo_server)
    notices = [i for i in window.alerts.model.items if i.title == "Sign-in not remembered"]
    assert len(notices) == 1
    assert store._entries == {}  # not even in memory: nothing was to be remembered

    click(window.sign_out_button, rig.qtbot)
    rig.qtbot.waitUntil(lambda: rig.console.dialog is not None, timeout=WAIT_MS)
    assert rig.console.dialog.notice.isHidden(), "said once, not at every sign-in"


def sign_in_as_started(rig: ConsoleRig, server: DemoServer):  # type: ignore[no-untyped-def]
    dialog = rig.console.dialog
    assert dialog is not None
    fill_sign_in(
        dialog,
        rig.qtbot,
        server=server.url,
        tenant=server.demo.tenant,
        username="staff1",
        password=server.demo.passwords["staff1"],
    )
    submit(dialog, rig.qtbot)
    return rig.wait_window()


def test_a_cache_edited_behind_the_console_is_repaired_once_the_window_shows(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
) -> None:
    first = make_console()
    sign_in_as(first, demo_server, "staff1", remember=True)
    workspace = first.console.workspace
    assert workspace is not None
    services = [s.id for s in workspace.cache.services({})]
    now = datetime.now(UTC)
    issued = [workspace.cache.issue_ticket(services[0], at=now) for _ in range(2)]
    first.qtbot.waitUntil(lambda: workspace.cache.outbox_size() == 0, timeout=WAIT_MS)
    everything = workspace.cache.waiting_changes(None).everything
    assert everything is not None
    waiting = {r.id for q in everything.values() for r in q}
    assert {i.ticket_id for i in issued} <= waiting
    path = workspace.cache.path
    shut(first)
    edited = sqlite3.connect(path)  # the queue emptied behind the console's back
    edited.execute("UPDATE tickets SET status = 'done' WHERE status = 'waiting'")
    edited.commit()
    edited.close()

    again = make_console()  # same data dir: a remembered start
    start(again.console, again.qtbot)
    window = again.wait_window()

    def shown() -> set[str]:
        snap = window.snapshot
        return {r.id for q in snap.waiting.values() for r in q} if snap else set()

    again.qtbot.waitUntil(lambda: shown() == waiting, timeout=WAIT_MS)
    repaired = again.console.workspace
    assert repaired is not None
    assert repaired.cache.repaired
    shut(again)


def test_the_collector_pauses_while_a_remembered_start_opens_the_window(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
) -> None:
    first = make_console()
    sign_in_as(first, demo_server, "staff1", remember=True)
    shut(first)
    collector = GuiCollector.installed()
    assert collector is not None
    assert collector.active
    assert not gc.isenabled()  # collections run from the UI thread's timer only

    again = make_console()
    collecting: list[bool] = []
    again.console.window_shown.connect(lambda _w: collecting.append(collector.active))
    task = asyncio.ensure_future(start_console(again.console))
    again.qtbot.waitUntil(task.done, timeout=WAIT_MS)
    task.result()

    assert collecting == [False]  # the window opened with the collector paused
    assert collector.active  # and it runs again once the start is over
    shut(again)
