"""Sync engines on real cache files against a real ``queuedesk-server serve`` on 127.0.0.1.

The server is the one of ``tests/integration/sync_client`` (a fresh SQLite copy
of the migrated template, the tenant of ``tests/server/api_support.py``) with one
service "B" and two counters serving it at the main branch, and a one-second
stream heartbeat so a (re)connected stream shows itself quickly. A test
parametrizes ``server_settings`` to change more.

:func:`console` starts one console: its cache file, an httpx client (optionally
through a :class:`~tests.support.faultproxy.FaultProxy`), a signed-in session for
the cache's device and a running :class:`SyncEngine` whose listener records
everything it is told.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from server.config import sqlite_url
from server.db import make_engine, make_session_factory, session_scope
from server.services import branches
from sync.client.api import SyncApi
from sync.client.auth import AuthSession
from sync.client.backoff import Backoff
from sync.client.cache import LocalCache
from sync.client.connectivity import Alert, ConnectionState, SyncListener
from sync.client.credentials import MemoryCredentialStore
from sync.client.engine import EngineSettings, SyncEngine
from sync.client.views import AppliedPull, Rejection
from sync.protocol import PulledEvent
from tests.server import live
from tests.server.api_support import PASSWORD, TENANT, seed
from tests.server.conftest import _isolated_settings, sqlite_template
from tests.support.faultproxy import FaultProxy

__all__ = ["_isolated_settings", "sqlite_template"]  # fixtures, re-used from the server tests

WAIT_S = 30.0  # generous: conditions are awaited, never timed

FAST = EngineSettings(
    poll_interval_s=1.0,
    idle_check_s=60.0,
    stuck_after_s=60.0,
    retry_backoff=Backoff(base=0.05, cap=0.3),
    stream_backoff=Backoff(base=0.05, cap=0.3),
)


@dataclass(frozen=True)
class Server:
    base_url: str
    ids: dict[str, uuid.UUID]

    @property
    def branch_id(self) -> str:
        return str(self.ids["branch_id"])

    @property
    def service_id(self) -> str:
        return str(self.ids["service_id"])

    @property
    def counters(self) -> tuple[str, str]:
        return str(self.ids["counter_1"]), str(self.ids["counter_2"])

    @property
    def port(self) -> int:
        port = urlsplit(self.base_url).port
        assert port is not None
        return port


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """Server settings of a test; parametrize this name to change them."""
    return {}


@pytest.fixture
def server(
    sqlite_template: Path,
    tmp_path: Path,
    server_settings: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Server]:
    path = tmp_path / "server.db"
    shutil.copyfile(sqlite_template, path)
    engine = make_engine(sqlite_url(path))
    try:
        factory = make_session_factory(engine)
        ids = seed(factory)
        tenant, branch = ids["tenant_id"], ids["branch_id"]
        with session_scope(factory) as session:
            service = branches.create_service(session, tenant, branch, "B", "Benefits")
            ids["service_id"] = service.id
            for number in (1, 2):
                counter = branches.create_counter(
                    session, tenant, branch, number, f"Counter {number}", [service.id]
                )
                ids[f"counter_{number}"] = counter.id
    finally:
        engine.dispose()
    for name, value in {"sync_heartbeat_s": 1.0, **server_settings}.items():
        monkeypatch.setenv(f"QUEUEDESK_{name.upper()}", str(value))
    with live.serve(sqlite_url(path), tmp_path) as running:
        yield Server(running.base_url, ids)


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", server.port) as running:
        yield running


@dataclass
class Recorder(SyncListener):
    """Everything an engine told its listener, in order."""

    states: list[ConnectionState] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    applied: list[AppliedPull] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    synced: list[datetime] = field(default_factory=list)
    repaired: int = 0

    def on_state(self, state: ConnectionState) -> None:
        self.states.append(state)

    def on_pending(self, count: int) -> None:
        self.pending.append(count)

    def on_applied(self, applied: AppliedPull) -> None:
        self.applied.append(applied)

    def on_rejections(self, rejections: list[Rejection]) -> None:
        self.rejections.extend(rejections)

    def on_repaired(self) -> None:
        self.repaired += 1

    def on_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def on_synced(self, at: datetime) -> None:
        self.synced.append(at)

    def alert_kinds(self) -> list[str]:
        return [a.kind for a in self.alerts]


@dataclass
class Console:
    """One running console: cache, engine, listener and the paths its client requested."""

    cache: LocalCache
    engine: SyncEngine
    events: Recorder
    session: AuthSession
    calls: list[str]

    @property
    def api(self) -> SyncApi:
        return self.engine.api

    async def log(self) -> list[PulledEvent]:
        """The branch's whole log on the service, as this console's session reads it."""
        events: list[PulledEvent] = []
        after = 0
        while True:
            page = await self.api.pull(
                self.engine.branch_id, after, device_id=self.engine.device_id
            )
            events += page.events
            after = page.cursor
            if not page.has_more:
                return events


@asynccontextmanager
async def console(
    base_url: str,
    branch_id: str,
    path: Path,
    *,
    settings: EngineSettings = FAST,
    username: str = "staff1",
    idle: bool = True,
) -> AsyncIterator[Console]:
    """A console on ``path`` syncing with ``base_url``; idle (first sync done) on entry."""
    cache = LocalCache.open(path, branch_id)
    calls: list[str] = []

    async def note(request: httpx.Request) -> None:
        calls.append(request.url.path)

    try:
        async with httpx.AsyncClient(
            base_url=base_url, timeout=5.0, trust_env=False, event_hooks={"request": [note]}
        ) as http:
            session = AuthSession(http, MemoryCredentialStore())
            await session.login(TENANT, username, PASSWORD, device_id=uuid.UUID(cache.device_id))
            api = SyncApi(http, session, attempts=2, backoff=Backoff(base=0.05, cap=0.2))
            recorder = Recorder()
            engine = SyncEngine(cache, api, branch_id, recorder, settings=settings)
            task = asyncio.create_task(engine.run())
            try:
                if idle:
                    await engine.wait_idle(WAIT_S)
                yield Console(cache, engine, recorder, session, calls)
            finally:
                engine.stop()
                await asyncio.wait_for(task, WAIT_S)
    finally:
        cache.close()


async def eventually(condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Wait until ``condition()`` holds; fail after ``timeout`` seconds (never a timing claim)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def now() -> datetime:
    return datetime.now(UTC)
