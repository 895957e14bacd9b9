"""The service process goes away: stopped for a long offline stretch, or SIGKILLed mid-push."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path

import pytest

from core import commands as cmd
from core.events import EventBase
from sync.client.connectivity import ConnectionState
from sync.protocol import PushRequest, PushResponse
from tests.integration.sync_distributed.conftest import Cluster, check_log
from tests.integration.sync_engine.conftest import FAST, WAIT_S, console, eventually, now
from tests.support.faultproxy import FaultProxy
from tests.support.sync_work import RandomWork

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

OFFLINE_KINDS = frozenset({"issue", "call", "start", "complete", "transfer", "no_show"})


async def test_two_hundred_commands_while_the_server_is_down_arrive_exactly_once(
    sqlite_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = sqlite_cluster
    counter = cluster.counters[0]
    async with (
        console(cluster.base_url, cluster.branch_id, tmp_path / "a.sqlite3") as a,
        console(cluster.base_url, cluster.branch_id, tmp_path / "b.sqlite3") as b,
    ):
        committed: list[EventBase] = a.cache.execute(cmd.OpenCounter(at=now(), counter_id=counter))
        await a.engine.wait_idle(WAIT_S)
        await asyncio.to_thread(cluster.server.stop)  # the process, not just the link

        work = RandomWork(a.cache, random.Random(4), counter, cluster.services, kinds=OFFLINE_KINDS)
        offline: list[EventBase] = []
        commands = 0
        while commands < 200:
            if events := work.step():
                commands += 1
                offline += events
        await eventually(lambda: a.engine.state is ConnectionState.OFFLINE)
        await eventually(lambda: b.engine.state is not ConnectionState.ONLINE)
        assert set(work.done) == OFFLINE_KINDS
        assert a.cache.outbox_size() == len(offline)
        seqs = [e.device_seq for e in offline]
        assert seqs == list(range(2, 2 + len(offline)))  # after the open, without a gap
        assert len(cluster.events()) == 1  # nothing reached the database meanwhile

        await asyncio.to_thread(cluster.server.start)  # same port, same database
        await a.engine.wait_idle(WAIT_S)
        await b.engine.wait_idle(WAIT_S)
        await eventually(lambda: a.cache.projection_hash() == b.cache.projection_hash())

        assert a.cache.outbox_size() == 0
        assert a.events.rejections == []
        assert a.events.alert_kinds().count("connection_restored") == 1
        issued = [e for e in offline if getattr(e, "type", "") == "ticket.issued"]
        assert all(b.cache.ticket(str(getattr(e, "ticket_id", ""))) for e in issued)

    log = cluster.events()
    check_log(log, {a.cache.device_id: [*committed, *offline]})
    assert {e.status for e in log} == {"accepted"}
    assert len(log) == 1 + len(offline)


async def test_a_server_killed_mid_push_loses_nothing_and_the_consoles_converge(
    sqlite_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = sqlite_cluster
    counter = cluster.counters[0]
    small_batches = dataclasses.replace(FAST, push_batch=40)
    with FaultProxy("127.0.0.1", cluster.server.port) as link:
        async with (
            console(
                link.url, cluster.branch_id, tmp_path / "a.sqlite3", settings=small_batches
            ) as a,
            console(cluster.base_url, cluster.branch_id, tmp_path / "b.sqlite3") as b,
        ):
            device = a.cache.device_id
            committed = a.cache.execute(cmd.OpenCounter(at=now(), counter_id=counter))
            await a.engine.wait_idle(WAIT_S)
            link.cut()
            work = RandomWork(a.cache, random.Random(5), counter, cluster.services)
            while len(committed) < 600:
                committed += work.step()
            await eventually(lambda: a.engine.state is ConnectionState.OFFLINE)

            pushing = asyncio.Event()
            real_push = a.api.push

            async def noted(request: PushRequest) -> PushResponse:
                pushing.set()
                return await real_push(request)

            def stored() -> int:
                return sum(1 for e in cluster.events() if e.device_id == device)

            a.api.push = noted  # type: ignore[method-assign]
            link.heal()
            a.engine.retry_now()

            # 1: SIGKILL at a random moment of a push (before, during or after its commit).
            await eventually(pushing.is_set)
            await asyncio.sleep(random.Random(11).uniform(0.0, 0.05))
            cluster.server.kill()
            await asyncio.to_thread(cluster.server.start)

            # 2: SIGKILL right after the service committed a batch whose answer is lost.
            await eventually(lambda: a.cache.outbox_size() < len(committed) - 80)
            # Every answer until the faults are cleared: a fixed few could all be used up
            # by quick retries before the service is killed, and the console would
            # then know of the batch after all. The open connections are reset too: the
            # live stream, whose answer began before, would otherwise bring the batch
            # back to the console as soon as it is committed.
            link.drop_responses(10_000)
            link.reset_connections()
            pushing.clear()
            await eventually(pushing.is_set)
            await eventually(lambda: stored() > len(committed) - a.cache.outbox_size())
            cluster.server.kill()
            unsent = a.cache.outbox_size()
            assert stored() > len(committed) - unsent  # held by the service, unsent here
            link.clear_faults()
            await asyncio.to_thread(cluster.server.start)

            await a.engine.wait_idle(WAIT_S)
            await b.engine.wait_idle(WAIT_S)
            await eventually(lambda: a.cache.projection_hash() == b.cache.projection_hash())
            assert a.cache.outbox_size() == 0
            assert a.engine.stats.failures >= 2  # both crashes were seen, and retried

    log = cluster.events()
    check_log(log, {device: committed})
