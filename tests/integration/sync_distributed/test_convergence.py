"""Five consoles working over flaky links converge; skewed clocks do not reorder queues."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from contextlib import AsyncExitStack, ExitStack
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core import commands as cmd
from core.events import EventBase, TicketIssued
from sync.client.connectivity import ConnectionState
from tests.integration.sync_distributed.conftest import Cluster, check_log
from tests.integration.sync_engine.conftest import WAIT_S, Console, console, eventually, now
from tests.support.faultproxy import FaultProxy
from tests.support.sync_work import RandomWork

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

CONSOLES = 5
STEPS = 250


async def test_five_consoles_converge_after_random_interleaved_work(
    cluster: Cluster, tmp_path: Path
) -> None:
    rng = random.Random(20240604)
    with ExitStack() as links:
        proxies = [
            links.enter_context(FaultProxy("127.0.0.1", cluster.server.port))
            for _ in range(CONSOLES)
        ]
        async with AsyncExitStack() as stack:
            consoles: list[Console] = [
                await stack.enter_async_context(
                    console(proxy.url, cluster.branch_id, tmp_path / f"c{i}.sqlite3")
                )
                for i, proxy in enumerate(proxies)
            ]
            work = [
                RandomWork(c.cache, random.Random(rng.random()), counter, cluster.services)
                for c, counter in zip(consoles, cluster.counters, strict=True)
            ]
            committed: dict[str, list[EventBase]] = {c.cache.device_id: [] for c in consoles}
            cuts = 0
            for step in range(STEPS):
                i = rng.randrange(CONSOLES)
                committed[consoles[i].cache.device_id] += work[i].step()
                if step % 25 == 0:  # links go down and come back while everyone works
                    link = rng.choice(proxies)
                    if link.is_cut:
                        link.heal()
                    else:
                        link.cut()
                        cuts += 1
                await asyncio.sleep(0.005)  # staff pace: the engines sync between commands
            for link in proxies:
                link.heal()
            for c in consoles:
                await c.engine.wait_idle(WAIT_S)
            await eventually(
                lambda: (
                    len({c.cache.projection_hash() for c in consoles}) == 1
                    and all(c.cache.cursor() == consoles[0].cache.cursor() for c in consoles)
                )
            )

            async with console(
                cluster.base_url, cluster.branch_id, tmp_path / "new.sqlite3"
            ) as new:
                # A console that never saw the work builds the same state from the log.
                assert new.cache.projection_hash() == consoles[0].cache.projection_hash()
            assert all(c.cache.outbox_size() == 0 for c in consoles)
            assert all(c.engine.state is ConnectionState.ONLINE for c in consoles)

    log = cluster.events()
    check_log(log, committed)
    done = Counter[str]()
    for w in work:
        done.update(w.done)
    assert cuts >= 3
    assert {"issue", "call", "start", "complete", "transfer", "no_show", "park"} <= set(done)
    assert sum(len(events) for events in committed.values()) == len(log)
    assert any(e.status == "rejected" for e in log)  # offline consoles did collide
    accepted = [e for e in log if e.status == "accepted"]
    assert sorted(e.server_seq or 0 for e in accepted) == list(range(1, len(accepted) + 1))


async def test_consoles_with_clocks_two_hours_off_converge_and_keep_server_order(
    sqlite_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = sqlite_cluster
    ahead, behind = timedelta(hours=2), timedelta(hours=-2)
    service = cluster.services[0]
    c1, c2, c3 = cluster.counters[:3]

    def at(skew: timedelta) -> datetime:
        return now() + skew

    async with (
        console(cluster.base_url, cluster.branch_id, tmp_path / "fast.sqlite3") as fast,
        console(cluster.base_url, cluster.branch_id, tmp_path / "slow.sqlite3") as slow,
        console(cluster.base_url, cluster.branch_id, tmp_path / "right.sqlite3") as right,
    ):
        everyone = (fast, slow, right)

        async def settled() -> None:
            for c in everyone:
                await c.engine.wait_idle(WAIT_S)
            await eventually(lambda: len({c.cache.projection_hash() for c in everyone}) == 1)

        # Alternate: the fast clock's tickets carry times four hours after the slow
        # clock's, though each slow ticket joined after the fast one before it.
        issued: list[TicketIssued] = []
        for turn in range(6):
            who, skew = (fast, ahead) if turn % 2 == 0 else (slow, behind)
            issued.append(who.cache.issue_ticket(service, at=at(skew)))
            await settled()
        joined = [t.ticket_id for t in issued]

        by_clock = sorted(issued, key=lambda t: t.occurred_at)
        assert [t.ticket_id for t in by_clock] != joined  # the clocks disagree with the order
        for c in everyone:
            assert [t.id for t in c.cache.waiting(service)] == joined

        # Every console, whatever its clock, calls them in the order they joined.
        called: list[str] = []
        for turn, (who, skew, counter) in enumerate(
            [(fast, ahead, c1), (slow, behind, c2), (right, timedelta(0), c3)] * 2
        ):
            if turn < 3:
                who.cache.execute(cmd.OpenCounter(at=at(skew), counter_id=counter))
            who.cache.execute(cmd.CallNext(at=at(skew), counter_id=counter))
            ticket = next(x for x in who.cache.counters() if x.id == counter).current_ticket_id
            assert ticket is not None
            called.append(ticket)
            who.cache.execute(cmd.Complete(at=at(skew), ticket_id=ticket))
            await settled()

        assert called == joined
        for c in everyone:
            assert c.events.rejections == []
            assert c.cache.waiting(service) == []
        views = [right.cache.ticket(t) for t in joined]
        assert all(v is not None and v.status == "done" for v in views)
        first, second = views[0], views[1]
        assert first is not None
        assert second is not None
        assert first.issued_at - second.issued_at > timedelta(hours=3)  # device times kept
