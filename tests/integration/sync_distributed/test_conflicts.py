"""Offline consoles that disagree: one ticket called twice, numbers issued on both sides."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from core import commands as cmd
from core.numbering import FALLBACK_FLOOR
from core.values import TicketNumber
from sync.client.connectivity import ConnectionState
from tests.integration.sync_distributed.conftest import Cluster, check_log, settle
from tests.integration.sync_engine.conftest import FAST, WAIT_S, console, eventually, now
from tests.support.faultproxy import FaultProxy

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


@pytest.mark.parametrize("first_back", ["a", "b"])
async def test_the_same_ticket_called_offline_twice_is_called_once_in_either_order(
    cluster: Cluster, tmp_path: Path, first_back: str
) -> None:
    """The service takes whichever call reaches it first; the other console is told why.

    Console A issued the ticket; either console reconnects first.
    """
    c1, c2 = cluster.counters[:2]
    with (
        FaultProxy("127.0.0.1", cluster.server.port) as link_a,
        FaultProxy("127.0.0.1", cluster.server.port) as link_b,
    ):
        async with (
            console(link_a.url, cluster.branch_id, tmp_path / "a.sqlite3") as a,
            console(link_b.url, cluster.branch_id, tmp_path / "b.sqlite3") as b,
        ):
            a.cache.execute(cmd.OpenCounter(at=now(), counter_id=c1))
            b.cache.execute(cmd.OpenCounter(at=now(), counter_id=c2))
            ticket = a.cache.issue_ticket(cluster.services[0], at=now())
            await settle(a, b)
            assert b.cache.ticket(ticket.ticket_id) is not None

            link_a.cut()
            link_b.cut()
            call_a = a.cache.execute(cmd.CallNext(at=now(), counter_id=c1))[0]
            call_b = b.cache.execute(cmd.CallNext(at=now(), counter_id=c2))[0]
            await eventually(lambda: a.engine.state is not ConnectionState.ONLINE)
            await eventually(lambda: b.engine.state is not ConnectionState.ONLINE)
            for c in (a, b):  # each believes it has the customer
                assert c.cache.counters()[0 if c is a else 1].current_ticket_id == ticket.ticket_id

            order = [(a, link_a), (b, link_b)]
            if first_back == "b":
                order.reverse()
            (won, won_link), (lost, lost_link) = order
            won_link.heal()
            await won.engine.wait_idle(WAIT_S)
            lost_link.heal()
            await lost.engine.wait_idle(WAIT_S)
            await settle(a, b)

            won_counter, lost_counter = (c1, c2) if won is a else (c2, c1)
            assert won.events.rejections == []
            refused = lost.events.rejections
            assert [r.event_id for r in refused] == [str((call_b if lost is b else call_a).id)]
            assert ticket.number in refused[0].reason
            assert "already called" in refused[0].reason
            assert any(
                alert.kind == "rejected" and ticket.number in alert.message
                for alert in lost.events.alerts
            )
            for c in (a, b):  # both show what the service decided
                view = c.cache.ticket(ticket.ticket_id)
                assert view is not None
                assert (view.status, view.counter_id) == ("called", won_counter)
                by_id = {x.id: x for x in c.cache.counters()}
                assert by_id[won_counter].current_ticket_id == ticket.ticket_id
                assert by_id[lost_counter].current_ticket_id is None
                assert c.cache.outbox_size() == 0
            stored_alerts = lost.cache.alerts()
            assert [x.event_id for x in stored_alerts] == [refused[0].event_id]

    log = cluster.events()
    calls = Counter(e.status for e in log if e.type == "ticket.called")
    assert calls == {"accepted": 1, "rejected": 1}
    accepted = next(e for e in log if e.type == "ticket.called" and e.status == "accepted")
    assert accepted.id == str((call_a if won is a else call_b).id)


async def test_two_offline_consoles_issue_a_hundred_tickets_each_without_a_repeated_number(
    sqlite_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = sqlite_cluster
    service = cluster.services[0]
    # Keep at least 60 leased numbers: two blocks of 50 at start. 30 tickets issued
    # online leave 70, so each offline run of 100 goes through its leases (70) into its
    # own fallback numbers (30 of the 40 of its slot).
    two_blocks = dataclasses.replace(FAST, lease_min_remaining=60)
    with (
        FaultProxy("127.0.0.1", cluster.server.port) as link_a,
        FaultProxy("127.0.0.1", cluster.server.port) as link_b,
    ):
        async with (
            console(
                link_a.url, cluster.branch_id, tmp_path / "a.sqlite3", settings=two_blocks
            ) as a,
            console(
                link_b.url, cluster.branch_id, tmp_path / "b.sqlite3", settings=two_blocks
            ) as b,
        ):
            online = [c.cache.issue_ticket(service, at=now()) for c in (a, b) for _ in range(30)]
            await settle(a, b)
            await eventually(lambda: all(c.cache.lease_needs()[service] == 70 for c in (a, b)))
            assert a.cache.slot is not None
            assert b.cache.slot is not None
            assert a.cache.slot != b.cache.slot

            link_a.cut()
            link_b.cut()
            offline = {
                c.cache.device_id: [c.cache.issue_ticket(service, at=now()) for _ in range(100)]
                for c in (a, b)
            }
            assert a.cache.outbox_size() == b.cache.outbox_size() == 100
            for tickets in offline.values():
                numbers = [TicketNumber.parse(t.number).number for t in tickets]
                assert sum(n >= FALLBACK_FLOOR for n in numbers) == 30  # leases ran out
            assert a.cache.alerts() == b.cache.alerts() == []  # no "may clash" warning

            link_a.heal()
            link_b.heal()
            await settle(a, b)
            assert a.events.rejections == b.events.rejections == []
            everyone = [*online, *offline[a.cache.device_id], *offline[b.cache.device_id]]
            numbers = [t.number for t in everyone]
            assert len(set(numbers)) == len(numbers) == 260
            for c in (a, b):
                assert sorted(w.number for w in c.cache.waiting(service)) == sorted(numbers)

    log = cluster.events()
    assert Counter(e.status for e in log if e.type == "ticket.issued") == {"accepted": 260}
    check_log(
        log,
        {
            a.cache.device_id: list(online[:30]) + offline[a.cache.device_id],
            b.cache.device_id: list(online[30:]) + offline[b.cache.device_id],
        },
    )


async def test_with_default_leases_two_offline_consoles_issue_a_hundred_each_without_a_clash(
    sqlite_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = sqlite_cluster
    service = cluster.services[0]
    with (
        FaultProxy("127.0.0.1", cluster.server.port) as link_a,
        FaultProxy("127.0.0.1", cluster.server.port) as link_b,
    ):
        async with (
            console(link_a.url, cluster.branch_id, tmp_path / "a.sqlite3") as a,
            console(link_b.url, cluster.branch_id, tmp_path / "b.sqlite3") as b,
        ):
            link_a.cut()
            link_b.cut()
            issued = [c.cache.issue_ticket(service, at=now()) for c in (a, b) for _ in range(100)]
            link_a.heal()
            link_b.heal()
            await settle(a, b)
            assert a.events.rejections == b.events.rejections == []
            assert len({t.number for t in issued}) == 200
