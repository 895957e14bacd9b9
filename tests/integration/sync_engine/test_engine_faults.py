"""Sync engines through a broken link: offline work, lost answers, conflicts, gaps, sign-out."""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import commands as cmd
from sync.client.api import Rejected
from sync.client.connectivity import ConnectionState
from sync.protocol import PushRequest, PushResponse
from tests.integration.sync_engine.conftest import (
    FAST,
    WAIT_S,
    Server,
    console,
    eventually,
    now,
)
from tests.server.api_support import PASSWORD, TENANT
from tests.support.faultproxy import FaultProxy

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def test_offline_work_queues_up_and_drains_exactly_once_when_the_link_heals(
    server: Server, proxy: FaultProxy, tmp_path: Path
) -> None:
    c1, _ = server.counters
    async with (
        console(proxy.url, server.branch_id, tmp_path / "a.sqlite3") as a,
        console(server.base_url, server.branch_id, tmp_path / "b.sqlite3") as b,
    ):
        proxy.cut()
        a.cache.execute(cmd.OpenCounter(at=now(), counter_id=c1))
        issued = [a.cache.issue_ticket(server.service_id, at=now()) for _ in range(3)]
        a.cache.execute(cmd.CallNext(at=now(), counter_id=c1))

        await eventually(lambda: a.engine.state is ConnectionState.OFFLINE)
        assert a.cache.outbox_size() == 5
        assert a.events.pending[-1] == 5
        assert "connection_lost" in a.events.alert_kinds()
        assert b.cache.ticket(issued[0].ticket_id) is None

        proxy.heal()
        await a.engine.wait_idle(WAIT_S)

        assert a.engine.state is ConnectionState.ONLINE
        assert a.cache.outbox_size() == 0
        assert a.events.alert_kinds().index("connection_restored") > a.events.alert_kinds().index(
            "connection_lost"
        )
        await eventually(lambda: a.cache.projection_hash() == b.cache.projection_hash())
        assert all(b.cache.ticket(t.ticket_id) is not None for t in issued)
        ids = Counter(e.event["id"] for e in await b.log())
        assert set(ids.values()) == {1}
        assert len(ids) == 5
        assert a.events.rejections == []


async def test_a_push_whose_answer_is_lost_is_retried_with_a_single_effect(
    server: Server, proxy: FaultProxy, tmp_path: Path
) -> None:
    quiet = dataclasses.replace(FAST, use_stream=False, poll_interval_s=3600.0)
    async with (
        console(proxy.url, server.branch_id, tmp_path / "a.sqlite3", settings=quiet) as a,
        console(server.base_url, server.branch_id, tmp_path / "b.sqlite3") as b,
    ):
        pushes = a.calls.count("/api/v1/sync/push")
        proxy.drop_responses(1)

        issued = a.cache.issue_ticket(server.service_id, at=now())
        await a.engine.wait_idle(WAIT_S)

        assert proxy.stats().responses_dropped == 1
        assert a.calls.count("/api/v1/sync/push") == pushes + 2  # the lost one and its retry
        assert a.cache.outbox_size() == 0
        assert a.events.rejections == []
        await eventually(lambda: b.cache.ticket(issued.ticket_id) is not None)
        log = [e.event["id"] for e in await b.log()]
        assert log.count(str(issued.id)) == 1


async def test_two_offline_calls_of_one_ticket_one_wins_the_other_is_told_why(
    server: Server, tmp_path: Path
) -> None:
    c1, c2 = server.counters
    with (
        FaultProxy("127.0.0.1", server.port) as link_a,
        FaultProxy("127.0.0.1", server.port) as link_b,
    ):
        async with (
            console(link_a.url, server.branch_id, tmp_path / "a.sqlite3") as a,
            console(link_b.url, server.branch_id, tmp_path / "b.sqlite3") as b,
        ):
            a.cache.execute(cmd.OpenCounter(at=now(), counter_id=c1))
            b.cache.execute(cmd.OpenCounter(at=now(), counter_id=c2))
            ticket = a.cache.issue_ticket(server.service_id, at=now())
            await eventually(
                lambda: (
                    a.cache.projection_hash() == b.cache.projection_hash()
                    and b.cache.ticket(ticket.ticket_id) is not None
                    and a.cache.outbox_size() == b.cache.outbox_size() == 0
                )
            )
            link_a.cut()
            link_b.cut()
            a.cache.execute(cmd.CallTicket(at=now(), counter_id=c1, ticket_id=ticket.ticket_id))
            b.cache.execute(cmd.CallTicket(at=now(), counter_id=c2, ticket_id=ticket.ticket_id))
            await eventually(lambda: b.engine.state is not ConnectionState.ONLINE)
            assert b.cache.counters()[1].current_ticket_id == ticket.ticket_id  # locally called

            link_a.heal()
            await a.engine.wait_idle(WAIT_S)
            link_b.heal()
            await b.engine.wait_idle(WAIT_S)

            assert a.events.rejections == []
            refused = [r for r in b.events.rejections if r.ticket_number == ticket.number]
            assert len(refused) == 1
            assert ticket.number in refused[0].reason
            assert refused[0].description.startswith(f"Call {ticket.number}")
            assert any(
                alert.kind == "rejected" and ticket.number in alert.message
                for alert in b.events.alerts
            )
            await eventually(lambda: a.cache.projection_hash() == b.cache.projection_hash())
            view = b.cache.ticket(ticket.ticket_id)
            assert view is not None
            assert (view.status, view.counter_id) == ("called", c1)
            assert b.cache.counters()[1].current_ticket_id is None
            assert b.cache.outbox_size() == 0


async def test_a_cache_restored_from_an_older_copy_realigns_its_device_seq(
    server: Server, tmp_path: Path
) -> None:
    c1, c2 = server.counters
    path, backup = tmp_path / "a.sqlite3", tmp_path / "a-backup.sqlite3"
    async with console(server.base_url, server.branch_id, path) as a:
        a.cache.execute(cmd.OpenCounter(at=now(), counter_id=c1))  # device_seq 1
        ticket = a.cache.issue_ticket(server.service_id, at=now())  # 2
        await a.engine.wait_idle(WAIT_S)
    shutil.copyfile(path, backup)  # closed: the WAL is checkpointed into the file
    async with console(server.base_url, server.branch_id, path) as a:
        a.cache.execute(cmd.CallNext(at=now(), counter_id=c1))  # 3
        a.cache.execute(cmd.StartService(at=now(), ticket_id=ticket.ticket_id))  # 4
        await a.engine.wait_idle(WAIT_S)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup, path)

    async with console(server.base_url, server.branch_id, path) as a:
        opened = a.cache.execute(cmd.OpenCounter(at=now(), counter_id=c2))[0]
        assert opened.device_seq == 3  # the restored file does not know 3 and 4 were used
        await a.engine.wait_idle(WAIT_S)

        assert a.engine.stats.realignments >= 1
        assert a.cache.outbox_size() == 0
        assert a.events.rejections == []
        log = {e.event["id"]: e.event for e in await a.log()}
        assert log[str(opened.id)]["device_seq"] == 5
        assert [c.status for c in a.cache.counters()] == ["open", "open"]
        view = a.cache.ticket(ticket.ticket_id)
        assert view is not None
        assert view.status == "serving"
        later = a.cache.execute(cmd.CloseCounter(at=now(), counter_id=c2))[0]
        assert later.device_seq == 6  # new commands continue after the realigned ones
        await a.engine.wait_idle(WAIT_S)
        assert a.engine.stats.realignments == 1


@pytest.mark.parametrize("server_settings", [{"access_token_ttl_s": 4}])
async def test_a_session_ended_elsewhere_signs_out_and_keeps_the_outbox(
    server: Server, tmp_path: Path, server_settings: dict[str, Any]
) -> None:
    async with console(server.base_url, server.branch_id, tmp_path / "a.sqlite3") as a:
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as other:
            login = {"tenant": TENANT, "username": "staff1", "password": PASSWORD}
            pair = (await other.post("/api/v1/auth/login", json=login)).json()
            headers = {"Authorization": f"Bearer {pair['access_token']}"}
            ended = await other.post("/api/v1/auth/logout", headers=headers)  # every session
            assert ended.status_code == 204

        # The console's access token lives on for a moment; its refresh is refused.
        await eventually(lambda: a.engine.state is ConnectionState.SIGNED_OUT)
        issued = a.cache.issue_ticket(server.service_id, at=now())  # still works locally

        assert a.cache.outbox_size() == 1
        assert a.cache.pending()[0]["id"] == str(issued.id)
        assert a.events.alert_kinds().count("signed_out") == 1
        assert a.engine.state is ConnectionState.SIGNED_OUT
        view = a.cache.ticket(issued.ticket_id)
        assert view is not None
        assert view.unsynced


async def test_the_watchdog_alerts_when_the_outbox_does_not_drain_while_online(
    server: Server, proxy: FaultProxy, tmp_path: Path
) -> None:
    watchful = dataclasses.replace(FAST, stuck_after_s=0.2)
    async with console(proxy.url, server.branch_id, tmp_path / "a.sqlite3", settings=watchful) as a:
        assert a.engine.stats.stuck_alerts == 0
        proxy.delay(0.5)  # the service answers, but every chunk takes half a second

        a.cache.issue_ticket(server.service_id, at=now())
        await eventually(lambda: "outbox_stuck" in a.events.alert_kinds())
        assert a.engine.state is ConnectionState.ONLINE
        await a.engine.wait_idle(WAIT_S)
        await eventually(lambda: "outbox_draining" in a.events.alert_kinds())

        kinds = a.events.alert_kinds()
        assert kinds.count("outbox_stuck") == 1
        assert kinds.index("outbox_draining") > kinds.index("outbox_stuck")
        assert a.engine.stats.longest_stuck_s >= watchful.stuck_after_s
        assert a.cache.outbox_size() == 0


async def test_a_batch_the_service_finds_too_large_is_split(server: Server, tmp_path: Path) -> None:
    quiet = dataclasses.replace(FAST, use_stream=False, poll_interval_s=3600.0)
    async with console(
        server.base_url, server.branch_id, tmp_path / "a.sqlite3", settings=quiet
    ) as a:
        real_push, sizes = a.api.push, []

        async def at_most_two(request: PushRequest) -> PushResponse:
            sizes.append(len(request.events))
            if len(request.events) > 2:  # as the service answers past MAX_PUSH_BYTES
                raise Rejected(413, "The push body is larger; send smaller batches.")
            return await real_push(request)

        a.api.push = at_most_two  # type: ignore[method-assign]
        issued = [a.cache.issue_ticket(server.service_id, at=now()) for _ in range(5)]
        await a.engine.wait_idle(WAIT_S)

        assert sizes == [5, 2, 2, 1]
        assert a.engine.stats.batch_splits == 1
        assert a.cache.outbox_size() == 0
        log = {e.event["id"] for e in await a.log()}
        assert {str(t.id) for t in issued} <= log
