"""Pulling in big pages (events folded once, live and base shared) ends where one by one does."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import commands as cmd
from core.errors import DomainError, MalformedEvent
from core.events import parse_event
from core.kpi_rows import fact_rows
from core.state import TicketStatus
from core.values import TicketNumber, TransferPosition
from sync.client import base, cache, projection
from sync.client.cache import LocalCache
from sync.client.kpi_store import fact_row_dict
from sync.client.outbox import dumps_pulled, parse_pulled
from sync.client.store import tickets
from tests.unit.sync.builders import (
    ACCOUNTS,
    BRANCH,
    C1,
    C2,
    LOANS,
    FakeService,
    at,
    open_cache,
)

KINDS = (
    "issue",
    "issue",
    "call_next",
    "call_next",
    "start",
    "complete",
    "park",
    "return",
    "transfer",
    "cancel",
    "no_show",
    "pause",
    "resume",
    "open",
    "close",
)
ACTIONS = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 99)), max_size=50)


def in_status(service: FakeService, status: TicketStatus) -> list[str]:
    return sorted(t.id for t in service.state.tickets.values() if t.status is status)


def command(service: FakeService, kind: str, n: int, minute: float) -> cmd.Command | None:
    """A command of kind ``kind`` on the service's state (``n`` picks among the candidates)."""
    when = at(minute)
    counter = (C1, C2)[n % 2]
    if kind == "issue":
        service_id, code = (ACCOUNTS, "A") if n % 3 else (LOANS, "L")
        number = TicketNumber(code, 1 + len(service.state.tickets))
        return cmd.IssueTicket(at=when, service_id=service_id, number=number)
    if kind in ("open", "close", "pause", "resume", "call_next"):
        return {
            "open": cmd.OpenCounter(at=when, counter_id=counter),
            "close": cmd.CloseCounter(at=when, counter_id=counter),
            "pause": cmd.PauseCounter(at=when, counter_id=counter, reason="Break"),
            "resume": cmd.ResumeCounter(at=when, counter_id=counter),
            "call_next": cmd.CallNext(at=when, counter_id=counter),
        }[kind]
    wanted = {
        "start": TicketStatus.CALLED,
        "complete": TicketStatus.SERVING,
        "park": TicketStatus.SERVING,
        "return": TicketStatus.PARKED,
        "no_show": TicketStatus.CALLED,
        "transfer": TicketStatus.WAITING,
        "cancel": TicketStatus.WAITING,
    }[kind]
    found = in_status(service, wanted)
    if not found:
        return None
    ticket = found[n % len(found)]
    return {
        "start": cmd.StartService(at=when, ticket_id=ticket),
        "complete": cmd.Complete(at=when, ticket_id=ticket),
        "park": cmd.Park(at=when, ticket_id=ticket),
        "return": cmd.ReturnTicket(at=when, ticket_id=ticket),
        "no_show": cmd.MarkNoShow(at=when, ticket_id=ticket),
        "transfer": cmd.Transfer(
            at=when,
            ticket_id=ticket,
            to_service_id=LOANS if n % 2 else ACCOUNTS,
            position=TransferPosition.FRONT if n % 3 == 0 else TransferPosition.BACK,
        ),
        "cancel": cmd.Cancel(at=when, ticket_id=ticket),
    }[kind]


def run(service: FakeService, actions: list[tuple[str, int]], start: float = 0) -> None:
    for minute, (kind, n) in enumerate(actions, start=int(start)):
        found = command(service, kind, n, minute)
        if found is None:
            continue
        with contextlib.suppress(DomainError):
            service.run(found)


def pull_all(service: FakeService, target: LocalCache, limit: int) -> None:
    while service.pull(target, limit).has_more:
        pass


def rows(target: LocalCache, query: str = "SELECT * FROM tickets ORDER BY id") -> list[Any]:
    conn = sqlite3.connect(target.path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


FACTS = "SELECT * FROM kpi_facts ORDER BY ticket_id, ord"


def expected_facts(service: FakeService) -> list[tuple[Any, ...]]:
    """The KPI fact rows of the service's whole log, as the cache stores them."""
    events = [parse_event(p.event) for p in service.log]
    found = [tuple(fact_row_dict(r).values()) for r in fact_rows(events, service.state.time_zone)]
    return sorted(found, key=lambda r: (r[0], r[1]))


def assert_converged(a: LocalCache, b: LocalCache) -> None:
    assert rows(a) == rows(b)
    assert rows(a, FACTS) == rows(b, FACTS)  # kept up to date by bulk pages too
    assert a.projection_hash() == b.projection_hash()
    assert a._replica.base == b._replica.base
    assert a._replica.live == b._replica.live


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=ACTIONS,
    after=ACTIONS,
    page_size=st.integers(2, 12),
    own_issues=st.integers(0, 3),
)
def test_big_pages_and_one_by_one_give_the_same_cache(
    before: list[tuple[str, int]],
    after: list[tuple[str, int]],
    page_size: int,
    own_issues: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(cache, "BULK_PAGE", 2)  # every page of two or more is a bulk page
        patch.setattr(base, "SNAPSHOT_EVERY", 5)
        service = FakeService()
        run(service, before)
        bulk = open_cache(Path(tmp), "bulk")
        single = open_cache(Path(tmp), "single")
        # Part of the log in big pages; commands of this console while it is not at the head.
        if service.log:
            service.pull(bulk, page_size)
        for i in range(own_issues):
            bulk.issue_ticket(ACCOUNTS, at=at(200 + i))
        pull_all(service, bulk, page_size)
        run(service, after, start=300)
        service.sync(bulk)
        pull_all(service, bulk, page_size)
        pull_all(service, single, 1)

        assert bulk.outbox_size() == 0
        assert not bulk._replica.shared  # the last page separated them again
        assert_converged(bulk, single)
        assert rows(bulk, FACTS) == expected_facts(service)
        bulk.close()
        reopened = LocalCache.open(bulk.path, BRANCH)
        assert_converged(reopened, single)
        reopened.close()
        single.close()


def test_a_command_during_a_bulk_pull_gets_its_own_live_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "BULK_PAGE", 2)
    service = FakeService()
    run(service, [("open", 0), ("issue", 1), ("issue", 2), ("issue", 3), ("call_next", 0)])
    target = open_cache(tmp_path)
    service.pull(target, 3)
    assert target._replica.shared  # a bulk page with more to come, nothing of ours on top

    issued = target.issue_ticket(ACCOUNTS, at=at(100))

    assert not target._replica.shared
    assert issued.ticket_id in target._replica.live.tickets
    assert issued.ticket_id not in target._replica.base.tickets
    service.sync(target)
    assert issued.ticket_id in target._replica.base.tickets
    assert target.outbox_size() == 0


def test_a_page_is_parsed_as_parse_event_parses_it() -> None:
    service = FakeService()
    run(service, [("open", 0), ("issue", 1), ("call_next", 0), ("start", 0)])
    bodies = [p.event for p in service.log]

    assert parse_pulled(bodies) == [parse_event(b) for b in bodies]
    broken = [*bodies[:1], {**bodies[1], "schema_version": True}]
    with pytest.raises(MalformedEvent, match="schema_version"):
        parse_pulled(broken)


def test_a_stored_pulled_event_reads_back_as_the_event_the_service_sent() -> None:
    service = FakeService()
    run(service, [("open", 0), ("issue", 1)])
    body = {**service.log[-1].event, "customer": {"name": 'Zoë Øster \u2014 \U0001f600 "q"\\'}}

    stored = dumps_pulled(body)

    assert json.loads(stored) == body
    assert list(json.loads(stored)) == list(body)  # keys in the order the service sent them
    assert parse_event(stored) == parse_event(body)


def test_ticket_values_are_in_the_order_of_the_table_columns() -> None:
    service = FakeService()
    run(service, [("open", 0), ("issue", 1), ("call_next", 0), ("start", 0), ("park", 0)])
    ticket = next(iter(service.state.tickets.values()))
    row = projection.ticket_row(ticket, True)
    assert list(row) == [c.name for c in tickets.columns]
    assert (row["id"], row["number"], row["service_id"]) == (
        ticket.id,
        ticket.number,
        ticket.service_id,
    )
    assert (row["status"], row["parked_by"], row["unsynced"]) == ("parked", C1, 1)
    assert row["issued_at"] == ticket.issued_at.isoformat()
