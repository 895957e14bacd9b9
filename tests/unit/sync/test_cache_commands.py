"""Local commands: one transaction for outbox and projection, nothing on failure."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core import commands as cmd
from core.errors import DomainError, InvalidValue
from core.events import Customer
from core.values import Channel, PriorityClass, TicketNumber
from sync.client import projection
from sync.client.cache import LocalCache
from tests.unit.sync.builders import ACCOUNTS, BRANCH, C1, DAY, LOANS, at, lease, open_cache


def table(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file through a separate connection: what another process would see."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_command_writes_outbox_and_projection_and_wakes_the_engine(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    woken: list[int] = []
    cache.set_wake(lambda: woken.append(1))
    cache.add_leases([lease(ACCOUNTS, "A", 1, 50)])

    issued = cache.issue_ticket(
        ACCOUNTS, at=at(0), customer=Customer(name="Ada", notes="wheelchair")
    )
    cache.execute(cmd.OpenCounter(at=at(1), counter_id=C1, actor_id="staff-1"))
    called = cache.execute(cmd.CallNext(at=at(2), counter_id=C1))

    assert issued.number == "A001"
    assert issued.device_id == cache.device_id
    assert [e.device_seq for e in (issued, *called)] == [1, 3]
    outbox = table(cache.path, "SELECT device_seq, status FROM outbox ORDER BY device_seq")
    assert outbox == [(1, "pending"), (2, "pending"), (3, "pending")]
    ticket = cache.ticket(issued.ticket_id)
    assert ticket is not None
    assert (ticket.number, ticket.status, ticket.counter_id) == ("A001", "called", C1)
    assert (ticket.customer_name, ticket.customer_notes, ticket.unsynced) == (
        "Ada",
        "wheelchair",
        True,
    )
    assert ticket.called_at == at(2)
    assert ticket.issued_at == at(0)
    counter = next(c for c in cache.counters() if c.id == C1)
    assert (counter.status, counter.current_ticket_number, counter.staff_id) == (
        "open",
        "A001",
        "staff-1",
    )
    assert woken == [1, 1, 1]
    assert [e["device_seq"] for e in cache.pending(10)] == [1, 2, 3]
    assert cache.outbox_size() == 3


def test_waiting_lists_follow_the_call_order(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.add_leases([lease(ACCOUNTS, "A", 1, 50)])
    first = cache.issue_ticket(ACCOUNTS, at=at(0))
    cache.issue_ticket(ACCOUNTS, at=at(1))
    urgent = cache.issue_ticket(ACCOUNTS, at=at(2), priority=PriorityClass.URGENT)
    loans = cache.issue_ticket(LOANS, at=at(3))

    assert [t.number for t in cache.waiting(ACCOUNTS)] == [urgent.number, "A001", "A002"]
    assert {s: [t.id for t in ts] for s, ts in cache.waiting_by_service().items()}[LOANS] == [
        loans.ticket_id
    ]
    assert cache.ticket_by_number("A1", DAY) == cache.ticket(first.ticket_id)
    assert {s.id: s.waiting for s in cache.services()} == {ACCOUNTS: 3, LOANS: 1}


def test_a_domain_error_writes_nothing(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    before = cache.projection_hash()

    with pytest.raises(DomainError, match="Counter 1 is closed; open it before calling"):
        cache.execute(cmd.CallNext(at=at(0), counter_id=C1))
    with pytest.raises(DomainError, match="There is no service nope"):
        cache.issue_ticket("nope", at=at(0))
    with pytest.raises(InvalidValue):
        cache.execute(cmd.OpenCounter(at=at(0).replace(tzinfo=None), counter_id=C1))

    assert cache.outbox_size() == 0
    assert table(cache.path, "SELECT count(*) FROM outbox") == [(0,)]
    assert cache.projection_hash() == before
    opened = cache.execute(cmd.OpenCounter(at=at(1), counter_id=C1))
    assert opened[0].device_seq == 1  # no sequence number was used up


def test_a_refused_issue_does_not_use_up_a_number(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.add_leases([lease(ACCOUNTS, "A", 1, 50)])
    with pytest.raises(DomainError, match="needs an appointment time"):
        cache.execute(
            cmd.IssueTicket(
                at=at(0),
                service_id=ACCOUNTS,
                number=TicketNumber("A", 1),
                channel=Channel.APPOINTMENT,
            )
        )
    assert cache.issue_ticket(ACCOUNTS, at=at(1)).number == "A001"
    cache.close()
    assert open_cache(tmp_path).issue_ticket(ACCOUNTS, at=at(2)).number == "A002"


def test_a_failure_mid_transaction_leaves_file_and_memory_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = open_cache(tmp_path)
    cache.add_leases([lease(ACCOUNTS, "A", 1, 50)])
    cache.issue_ticket(ACCOUNTS, at=at(0))
    before = cache.projection_hash()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    # The outbox row and the ticket are written by then; the counters come last.
    monkeypatch.setattr(projection, "write_counters", disk_full)
    with pytest.raises(OSError, match="disk full"):
        cache.issue_ticket(ACCOUNTS, at=at(1))
    monkeypatch.undo()

    assert table(cache.path, "SELECT device_seq FROM outbox") == [(1,)]
    assert table(cache.path, "SELECT number FROM tickets") == [("A001",)]
    assert table(cache.path, "SELECT next FROM number_blocks") == [(2,)]
    assert cache.projection_hash() == before
    again = cache.issue_ticket(ACCOUNTS, at=at(2))
    assert (again.number, again.device_seq) == ("A002", 2)  # memory was put back too
    assert len(cache.waiting(ACCOUNTS)) == 2


def test_device_seq_stays_contiguous_across_restarts(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    device_id = cache.device_id
    seqs = [e.device_seq for e in cache.execute(cmd.OpenCounter(at=at(0), counter_id=C1))]
    cache.close()
    for minute in range(1, 4):
        cache = LocalCache.open(tmp_path / "cache.sqlite3", BRANCH)
        assert cache.device_id == device_id
        event = cache.issue_ticket(LOANS, at=at(minute))
        seqs.append(event.device_seq)
        cache.close()
    assert seqs == [1, 2, 3, 4]
