"""Several consoles, a service that goes away, and the checks that nothing was lost.

The service is a real ``queuedesk-server serve`` process
(:class:`~tests.support.sync_cluster.ServerProcess`) on a port it keeps across
restarts, so a test can stop it, SIGKILL it mid-push and start it again on the
same database while consoles hold its URL. :func:`cluster` runs it on each
backend (``db_url`` of ``tests/server/conftest.py``: SQLite and PostgreSQL);
:func:`sqlite_cluster` on SQLite only. The branch has services "B" and "C" and
five counters serving both (:func:`~tests.support.sync_cluster.seed_branch`).

Consoles are the in-process ones of ``tests/integration/sync_engine``
(:func:`~tests.integration.sync_engine.conftest.console`); :func:`check_log`
holds the service's stored log to what the consoles committed.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.events import EventBase
from server.config import sqlite_url
from tests.integration.sync_engine.conftest import WAIT_S, Console, eventually
from tests.server.conftest import (
    _isolated_settings,
    backend,
    db_url,
    postgres_cluster,
    postgres_template,
    sqlite_template,
)
from tests.support.sync_cluster import (
    Branch,
    LoggedEvent,
    ServerProcess,
    seed_branch,
    server_events,
)

# fixtures re-used from the server tests
__all__ = [
    "_isolated_settings",
    "backend",
    "db_url",
    "postgres_cluster",
    "postgres_template",
    "sqlite_template",
]


@dataclass
class Cluster:
    """The service process, the database it serves and the seeded branch."""

    server: ServerProcess
    branch: Branch
    database_url: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def branch_id(self) -> str:
        return self.branch.branch_id

    @property
    def services(self) -> tuple[str, ...]:
        return self.branch.services

    @property
    def counters(self) -> tuple[str, ...]:
        return self.branch.counters

    def events(self) -> list[LoggedEvent]:
        """The service's stored log of the branch (accepted and rejected events)."""
        return server_events(self.database_url, self.branch_id)


def _cluster(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cluster]:
    monkeypatch.setenv("QUEUEDESK_SYNC_HEARTBEAT_S", "1.0")
    branch = seed_branch(database_url)
    with ServerProcess(database_url, tmp_path) as server:
        yield Cluster(server, branch, database_url)


@pytest.fixture
def cluster(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """The service on each backend, with the seeded branch."""
    yield from _cluster(db_url, tmp_path, monkeypatch)


@pytest.fixture
def sqlite_cluster(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cluster]:
    """The service on a fresh SQLite file, with the seeded branch."""
    path = tmp_path / "server.db"
    shutil.copyfile(sqlite_template, path)
    yield from _cluster(sqlite_url(path), tmp_path, monkeypatch)


def check_log(
    log: list[LoggedEvent], committed: dict[str, Iterable[EventBase]]
) -> dict[str, list[LoggedEvent]]:
    """Assert the service holds every committed event exactly once, in device order.

    ``committed`` maps a device id to every event its console committed. Each
    device's stored events must be exactly those ids, with ``device_seq`` 1..n
    without a gap or a repeat, each at the seq the console gave it. Returns the
    stored events by device.
    """
    ids = Counter(e.id for e in log)
    assert [i for i, n in ids.items() if n > 1] == []
    by_device: dict[str, list[LoggedEvent]] = {}
    for event in log:
        if event.device_id is not None:
            by_device.setdefault(event.device_id, []).append(event)
    for device, events in committed.items():
        mine = {str(e.id): e.device_seq for e in events}
        stored = by_device.get(device, [])
        assert {e.id: e.device_seq for e in stored} == mine
        assert sorted(e.device_seq or 0 for e in stored) == list(range(1, len(stored) + 1))
    return by_device


async def settle(*consoles: Console) -> None:
    """Wait until every console's outbox drained and all show the same state."""
    for c in consoles:
        await c.engine.wait_idle(WAIT_S)
    await eventually(
        lambda: (
            len({c.cache.projection_hash() for c in consoles}) == 1
            and all(c.cache.outbox_size() == 0 for c in consoles)
        )
    )
