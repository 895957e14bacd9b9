"""Fixtures for the console's UI tests: a real service with the demo tenant, an
in-memory keyring, a qasync loop driven by pytest-qt, and a console to drive.

The service is ``queuedesk-server serve`` on 127.0.0.1 over a copy of an SQLite
template that holds the demo tenant (``ensure_demo``: 3 services, 3 counters,
pause reasons, users admin/manager/staff1/staff2). :class:`DemoServer` can be
stopped and started again on the same port, which is how "the service went away"
is tested. Every test gets its own HOME and XDG folders, so nothing reaches the
real machine, and the no-disk-secrets test can scan them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import qasync
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop.console import Console
from desktop.main_window import MainWindow
from desktop.settings import ConsoleSettings
from server.config import sqlite_url
from server.db import make_engine, make_session_factory, session_scope
from server.services import tenants
from sync.client.backoff import Backoff
from sync.client.credentials import CredentialStore, KeyringCredentialStore
from sync.client.engine import EngineSettings
from tests.server import live
from tests.server.conftest import _isolated_settings, sqlite_template

__all__ = ["_isolated_settings", "sqlite_template"]  # fixtures, re-used from the server tests

WAIT_MS = 30_000  # generous: conditions are awaited, never timed

FAST = EngineSettings(
    poll_interval_s=1.0,
    idle_check_s=60.0,
    stuck_after_s=60.0,
    retry_backoff=Backoff(base=0.05, cap=0.5),
    stream_backoff=Backoff(base=0.05, cap=0.5),
)


@dataclass(frozen=True)
class Demo:
    tenant: str
    branch_id: str
    passwords: dict[str, str]


@pytest.fixture(scope="session")
def demo_template(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Demo]:
    """The migrated template with the demo tenant in it (argon2 hashes made once)."""
    path = tmp_path_factory.mktemp("demo-template") / "demo.db"
    shutil.copyfile(sqlite_template, path)
    engine = make_engine(sqlite_url(path))
    try:
        with session_scope(make_session_factory(engine)) as session:
            info = tenants.ensure_demo(session)
    finally:
        engine.dispose()
    return path, Demo(info.tenant_slug, str(info.branch_id), dict(info.users))


@dataclass
class DemoServer:
    """A ``queuedesk-server serve`` process that can be stopped and started on one port."""

    database_url: str
    log_dir: Path
    demo: Demo
    port: int = field(default_factory=live.free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None
        log = self.log_dir / f"server-{self.port}.log"
        env = {**os.environ, "QUEUEDESK_DATABASE_URL": self.database_url}
        command = [sys.executable, "-m", "server", "serve", "--port", str(self.port)]
        command += ["--log-level", "warning"]
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=env
            )
        live._wait_ready(self.process, self.url, log)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(live.STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def demo_server(
    demo_template: tuple[Path, Demo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DemoServer]:
    template, demo = demo_template
    path = tmp_path / "server.db"
    shutil.copyfile(template, path)
    monkeypatch.setenv("QUEUEDESK_SYNC_HEARTBEAT_S", "1.0")
    server = DemoServer(sqlite_url(path), tmp_path, demo)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME and the XDG folders inside the test's temporary directory."""
    home = tmp_path / "home"
    for name, sub in (
        ("HOME", ""),
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_CACHE_HOME", ".cache"),
    ):
        folder = home / sub
        folder.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(folder))
    return home


@pytest.fixture
def event_loop_qt(qapp: QApplication) -> Iterator[qasync.QEventLoop]:
    """A qasync loop that Qt's event processing (qtbot waits) drives, as in the app."""
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        while any(not t.done() for t in pending):
            qapp.processEvents()
        loop._QEventLoop__is_running = False  # type: ignore[attr-defined]
        asyncio.events._set_running_loop(None)
        loop.close()
        asyncio.set_event_loop(None)


@dataclass
class ConsoleRig:
    """A console under test and the places it keeps things."""

    console: Console
    data_dir: Path
    qtbot: QtBot

    @property
    def window(self) -> MainWindow:
        window = self.console.window
        assert window is not None, "the main window is not open"
        return window

    def wait_window(self) -> MainWindow:
        self.qtbot.waitUntil(lambda: self.console.window is not None, timeout=WAIT_MS)
        return self.window


@pytest.fixture
def make_console(
    qtbot: QtBot, event_loop_qt: qasync.QEventLoop, tmp_path: Path
) -> Iterator[object]:
    """Build consoles (each with its own data dir); all are shut down after the test."""
    made: list[Console] = []

    def make(
        *,
        store: CredentialStore | None = None,
        keyring_warning: str | None = None,
        server: str | None = None,
        name: str = "console",
    ) -> ConsoleRig:
        data_dir = tmp_path / name
        console = Console(
            settings=ConsoleSettings.in_dir(data_dir),
            store=store if store is not None else KeyringCredentialStore(),
            data_dir=data_dir,
            keyring_warning=keyring_warning,
            server=server,
            engine_settings=FAST,
        )
        made.append(console)
        return ConsoleRig(console, data_dir, qtbot)

    yield make
    for console in made:
        done = asyncio.ensure_future(console.shutdown())
        qtbot.waitUntil(done.done, timeout=WAIT_MS)
        done.result()
    left = [t.name for t in threading.enumerate() if t.name.startswith("queuedesk-sync")]
    assert left == [], f"sync threads left running: {left}"


# The offscreen platform cannot pass size hints to a window manager it does not
# have, and says so for every top-level window whose size constraints change (and
# for every window raised above another).
_PLATFORM_NOISE = pytest.mark.qt_log_ignore(
    r"This plugin does not support propagateSizeHints", r"This plugin does not support raise\(\)"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(_PLATFORM_NOISE)
