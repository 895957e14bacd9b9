"""Sync engines against the real service on a healthy link: convergence, stream, leases."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path

import pytest

from core import commands as cmd
from sync.client import engine as engine_module
from sync.client import kpi_store
from sync.client.cache import LocalCache
from sync.client.connectivity import ConnectionState
from sync.client.thread import SyncConfig, SyncThread, password_sign_in
from tests.integration.sync_engine.conftest import (
    FAST,
    WAIT_S,
    Recorder,
    Server,
    console,
    eventually,
    now,
)
from tests.server.api_support import PASSWORD, TENANT

pytestmark = [pytest.mark.slow]


@pytest.mark.asyncio
async def test_two_consoles_converge_after_interleaved_commands(
    server: Server, tmp_path: Path
) -> None:
    c1, c2 = server.counters
    async with (
        console(server.base_url, server.branch_id, tmp_path / "a.sqlite3") as a,
        console(server.base_url, server.branch_id, tmp_path / "b.sqlite3") as b,
    ):
        assert a.engine.state is ConnectionState.ONLINE
        a.cache.execute(cmd.OpenCounter(at=now(), counter_id=c1))
        b.cache.execute(cmd.OpenCounter(at=now(), counter_id=c2))
        issued = [a.cache.issue_ticket(server.service_id, at=now()) for _ in range(3)]
        issued += [b.cache.issue_ticket(server.service_id, at=now()) for _ in range(2)]
        await eventually(lambda: len(a.cache.waiting(server.service_id)) == 5)
        a.cache.execute(cmd.CallNext(at=now(), counter_id=c1))
        await eventually(lambda: len(b.cache.waiting(server.service_id)) == 4)
        b.cache.execute(cmd.CallNext(at=now(), counter_id=c2))
        first = a.cache.counters()[0].current_ticket_id
        assert first is not None
        a.cache.execute(cmd.StartService(at=now(), ticket_id=first))
        a.cache.execute(cmd.Complete(at=now(), ticket_id=first))

        await a.engine.wait_idle(WAIT_S)
        await b.engine.wait_idle(WAIT_S)
        await eventually(lambda: a.cache.projection_hash() == b.cache.projection_hash())

        numbers = {t.number for t in issued}
        assert len(numbers) == 5  # leased blocks: no number issued twice
        seen_by_b = {b.cache.ticket(t.ticket_id) for t in issued}
        assert None not in seen_by_b
        done = b.cache.ticket(first)
        assert done is not None
        assert done.status == "done"
        assert a.cache.outbox_size() == b.cache.outbox_size() == 0
        assert a.events.rejections == b.events.rejections == []
        log = await a.log()
        ids = [e.event["id"] for e in log]
        assert len(ids) == len(set(ids)) == 2 + 5 + 2 + 2  # opens, issues, calls, start+complete
        assert a.events.synced
        assert b.events.synced
        assert a.events.pending[-1] == 0


@pytest.mark.asyncio
async def test_a_command_reaches_the_other_console_through_the_stream(
    server: Server, tmp_path: Path
) -> None:
    no_polling = dataclasses.replace(FAST, poll_interval_s=3600.0, idle_check_s=3600.0)
    async with (
        console(server.base_url, server.branch_id, tmp_path / "a.sqlite3") as a,
        console(
            server.base_url, server.branch_id, tmp_path / "b.sqlite3", settings=no_polling
        ) as b,
    ):
        await eventually(lambda: b.engine.stats.stream_connects >= 1)
        await b.engine.wait_idle(WAIT_S)  # the round a stream (re)connect triggers is over
        pulls = b.calls.count("/api/v1/sync/pull")

        issued = a.cache.issue_ticket(server.service_id, at=now())

        await eventually(lambda: b.cache.ticket(issued.ticket_id) is not None)
        assert b.calls.count("/api/v1/sync/pull") == pulls  # no pull: the stream carried it
        assert b.engine.stats.stream_messages >= 1
        assert any(applied.stored for applied in b.events.applied)
        view = b.cache.ticket(issued.ticket_id)
        assert view is not None
        assert view.number == issued.number
        assert not view.unsynced


@pytest.mark.asyncio
async def test_leases_are_topped_up_at_start_and_after_issuing(
    server: Server, tmp_path: Path
) -> None:
    settings = dataclasses.replace(FAST, lease_min_remaining=49)  # blocks are 50 numbers
    async with console(
        server.base_url, server.branch_id, tmp_path / "a.sqlite3", settings=settings
    ) as a:
        assert a.cache.lease_needs() == {server.service_id: 50}
        assert a.engine.stats.leases == 1

        issued = [a.cache.issue_ticket(server.service_id, at=now()) for _ in range(2)]
        await a.engine.wait_idle(WAIT_S)

        await eventually(lambda: a.cache.lease_needs() == {server.service_id: 98})
        assert a.engine.stats.leases == 2
        assert [t.number for t in issued] == ["B001", "B002"]
        assert a.calls.count("/api/v1/sync/leases") == 2


def test_the_sync_thread_syncs_commands_committed_on_another_thread(
    server: Server, tmp_path: Path
) -> None:
    events = Recorder()
    callback_threads: set[str] = set()

    class Noting(Recorder):
        def on_pending(self, count: int) -> None:
            callback_threads.add(threading.current_thread().name)
            events.on_pending(count)

    config = SyncConfig(
        server_url=server.base_url,
        tenant=TENANT,
        branch_id=server.branch_id,
        cache_path=tmp_path / "thread.sqlite3",
        session_factory=password_sign_in(TENANT, "staff1", PASSWORD),
        settings=FAST,
        trust_env=False,
    )
    sync = SyncThread(config, Noting()).start()
    try:
        sync.wait_idle(WAIT_S)
        assert sync.state is ConnectionState.ONLINE
        issued = sync.cache.issue_ticket(server.service_id, at=now())  # the UI thread's command
        sync.wait_idle(WAIT_S)
        assert sync.cache.outbox_size() == 0
    finally:
        assert sync.stop(WAIT_S)
    assert not sync.running
    assert callback_threads == {"queuedesk-sync"}
    assert events.pending[-1] == 0
    assert 1 in events.pending
    reopened = LocalCache.open(config.cache_path, server.branch_id)
    try:
        view = reopened.ticket(issued.ticket_id)
        assert view is not None
        assert not view.unsynced
    finally:
        reopened.close()


def test_the_sync_thread_first_repairs_a_projection_its_cache_opened_unverified(
    server: Server, tmp_path: Path
) -> None:
    config = SyncConfig(
        server_url=server.base_url,
        tenant=TENANT,
        branch_id=server.branch_id,
        cache_path=tmp_path / "thread.sqlite3",
        session_factory=password_sign_in(TENANT, "staff1", PASSWORD),
        settings=FAST,
        trust_env=False,
    )
    with SyncThread(config) as sync:
        sync.wait_idle(WAIT_S)  # the reference data arrived
        issued = sync.cache.issue_ticket(server.service_id, at=now())
        sync.wait_idle(WAIT_S)
        expected = sync.cache.projection_hash()
    tampered = sqlite3.connect(config.cache_path)
    tampered.execute("UPDATE tickets SET status = 'done'")
    tampered.commit()
    tampered.close()

    cache = LocalCache.open(config.cache_path, server.branch_id, verify=False)
    events = Recorder()
    try:
        before = cache.ticket(issued.ticket_id)
        assert before is not None
        assert before.status == "done"  # as the file stands
        with SyncThread(config, events, cache=cache) as sync:
            sync.wait_idle(WAIT_S)
            assert events.repaired == 1
            assert cache.verified
            assert cache.repaired
            assert cache.projection_hash() == expected
            after = cache.ticket(issued.ticket_id)
            assert after is not None
            assert after.status == "waiting"
    finally:
        cache.close()


def _listed_and_facts(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        listed = conn.execute("SELECT count(*) FROM kpi_dirty").fetchone()[0]
        issued = conn.execute("SELECT count(*) FROM kpi_facts WHERE kind = 'issued'").fetchone()[0]
        return int(listed), int(issued)
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_facts_a_bulk_pull_left_for_later_are_written_while_idle(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kpi_store, "DEFER_OVER", 1)  # any page of two tickets is "bulk"
    async with console(server.base_url, server.branch_id, tmp_path / "a.sqlite3") as a:
        for _ in range(6):
            a.cache.issue_ticket(server.service_id, at=now())
        await a.engine.wait_idle(WAIT_S)
    deferred: list[int] = []
    real_flush = LocalCache.flush_facts

    def counting_flush(self: LocalCache, limit: int | None = None) -> int:
        left = real_flush(self, limit)
        deferred.append(left)
        return left

    monkeypatch.setattr(LocalCache, "flush_facts", counting_flush)
    monkeypatch.setattr(engine_module, "FACTS_CHUNK", 2)
    path = tmp_path / "b.sqlite3"
    async with console(server.base_url, server.branch_id, path) as b:
        # A new console pulls the six tickets at once; nobody asks for a report.
        await b.engine.wait_idle(WAIT_S)
        await eventually(lambda: _listed_and_facts(path) == (0, 6))
        assert len(b.cache.waiting(server.service_id)) == 6
    assert deferred[:3] == [4, 2, 0]  # two tickets per idle step, from the engine's loop
