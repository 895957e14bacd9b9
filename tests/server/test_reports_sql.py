"""The SQL KPI reports (service on SQLite and PostgreSQL, console cache) equal the reference.

Random event histories are run through the real state machine (invalid steps are
skipped), their fact rows stored (on the service with their day summaries, and the
counters' pauses folded as a catch-up folds them), and every grouping and a
filtered range compared with :func:`core.kpi_rows.reference`. One history crosses
the Berlin spring-forward night.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete
from sqlalchemy.orm import Session

from core import commands as cmd
from core.errors import DomainError
from core.events import CounterClosed, CounterPaused, CounterResumed, EventBase
from core.kpi_rows import Filters, fact_rows, reference
from core.machine import apply, decide
from core.state import BranchState, CounterConfig, ServiceConfig
from core.values import TicketNumber
from server.db import make_engine
from server.models import KpiFact, KpiPause, KpiSummary
from server.services.kpi_facts import BranchRef, fold_pauses, write_facts
from server.services.reports import kpi_reports
from sync.client import reports as local_reports
from sync.client.kpi_store import fact_row_dict
from sync.client.store import kpi_facts, metadata

ZONE = "Europe/Berlin"
SERVICES = (
    ServiceConfig("11111111-1111-4111-8111-111111111111", "A", "Accounts", target_wait_s=300),
    ServiceConfig("22222222-2222-4222-8222-222222222222", "L", "Loans", target_wait_s=None),
)
TARGETS = {s.id: s.target_wait_s for s in SERVICES}
PROFILE = tuple(s.id for s in SERVICES)
COUNTERS = ("c1", "c2")
# Saturday 2024-03-30 22:00 UTC: the history runs across the night clocks go forward.
START = datetime(2024, 3, 30, 22, 0, tzinfo=UTC)
OPS = (
    "issue",
    "call",
    "recall",
    "start",
    "complete",
    "no_show",
    "transfer",
    "park",
    "ret",
    "cancel",
    "pause",
    "resume",
)

step = st.tuples(
    st.sampled_from(OPS),
    st.integers(0, 7),  # ticket
    st.integers(0, 1),  # counter / service
    st.integers(1, 40),  # minutes since the previous step
)


def history(steps: list[tuple[str, int, int, int]]) -> list[EventBase]:
    state = BranchState.new(
        "b1", ZONE, SERVICES, tuple(CounterConfig(c, c, PROFILE) for c in COUNTERS)
    )
    events: list[EventBase] = []
    at = START
    issued = 0

    def run(command: cmd.Command) -> None:
        try:
            for event in decide(state, command):
                apply(state, event)
                events.append(event)
        except DomainError:
            pass

    for counter in COUNTERS:
        run(cmd.OpenCounter(at=at, counter_id=counter, actor_id=f"staff-{counter}"))
    tickets: list[str] = []
    for op, t, which, minutes in steps:
        at += timedelta(minutes=minutes, seconds=t * 7, microseconds=which * 1000)
        if op == "issue" or not tickets:
            issued += 1
            ticket_id = str(uuid.UUID(int=issued))
            service = SERVICES[which]
            number = TicketNumber(service.code, issued)
            run(cmd.IssueTicket(at=at, service_id=service.id, number=number, ticket_id=ticket_id))
            tickets.append(ticket_id)
            continue
        ticket = tickets[t % len(tickets)]
        command = _command(op, at, ticket, which)
        run(command)
    return events


def _command(op: str, at: datetime, ticket: str, which: int) -> cmd.Command:
    counter = COUNTERS[which]
    actor = f"staff-{counter}"
    if op == "call":
        return cmd.CallTicket(at=at, counter_id=counter, ticket_id=ticket, actor_id=actor)
    if op == "recall":
        return cmd.Recall(at=at, ticket_id=ticket, actor_id=actor)
    if op == "start":
        return cmd.StartService(at=at, ticket_id=ticket, actor_id=actor)
    if op == "complete":
        return cmd.Complete(at=at, ticket_id=ticket, actor_id=actor)
    if op == "no_show":
        return cmd.MarkNoShow(at=at, ticket_id=ticket, actor_id=actor)
    if op == "transfer":
        to = SERVICES[which].id
        return cmd.Transfer(at=at, ticket_id=ticket, to_service_id=to, actor_id=actor)
    if op == "park":
        return cmd.Park(at=at, ticket_id=ticket)
    if op == "ret":
        return cmd.ReturnTicket(at=at, ticket_id=ticket)
    if op == "pause":
        reason = "Break" if at.minute % 2 else "Paperwork"
        return cmd.PauseCounter(at=at, counter_id=counter, reason=reason, actor_id=actor)
    if op == "resume":
        return cmd.ResumeCounter(at=at, counter_id=counter, actor_id=actor)
    return cmd.Cancel(at=at, ticket_id=ticket)


CASES: list[tuple[str | None, Filters]] = [
    (None, Filters()),
    ("hour", Filters()),
    ("day", Filters()),
    ("service", Filters()),
    ("counter", Filters()),
    ("staff", Filters()),
    (None, Filters(first_day=date(2024, 3, 31), last_day=date(2024, 3, 31))),
    ("service", Filters(counter_id="c1")),
    (None, Filters(first_day=date(2030, 1, 1))),  # an empty range
    ("day", Filters(last_day=date(2024, 3, 31), service_id=SERVICES[0].id)),
    ("service", Filters(first_day=date(2024, 3, 31))),
    ("hour", Filters(service_id=SERVICES[1].id)),
]


@pytest.fixture
def local_engine(tmp_path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'cache.sqlite3'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@seed(20240331)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(step, min_size=1, max_size=40))
# A wait of exactly the SLA target, pauses ended by a resume, and one still open.
@example(
    [("issue", 0, 0, 1), ("call", 0, 0, 5), ("pause", 0, 1, 3), ("issue", 0, 1, 2),
     ("resume", 0, 1, 4), ("pause", 0, 0, 6), ("resume", 0, 0, 3), ("pause", 1, 1, 1)]
)  # fmt: skip
def test_sql_reports_equal_the_reference(db_url, local_engine, steps) -> None:
    events = history(steps)
    rows = fact_rows(events, ZONE)
    tenant, branch = uuid.uuid4(), uuid.uuid4()
    server = make_engine(db_url)
    try:
        with server.begin() as conn:
            for table in (KpiFact, KpiSummary, KpiPause):
                conn.execute(delete(table))
            write_facts(conn, tenant, branch, rows)
            fold_pauses(conn, BranchRef(tenant, branch, ZONE), _counter_rows(events))
        with local_engine.begin() as conn:
            conn.execute(delete(kpi_facts))
            if rows:
                conn.execute(kpi_facts.insert(), [fact_row_dict(r) for r in rows])
        for key, filters in CASES:
            expected = reference(events, targets=TARGETS, time_zone=ZONE, key=key, filters=filters)
            with local_engine.connect() as conn:
                local = local_reports.branch_report(
                    conn,
                    targets=TARGETS,
                    time_zone=ZONE,
                    counter_events=events,
                    key=key,
                    filters=filters,
                )
            assert local == expected, (key, filters)
            with server.connect() as conn, Session(conn) as session:
                found = kpi_reports(
                    session,
                    tenant_id=tenant,
                    zones={branch: ZONE},
                    targets=TARGETS,
                    key=key,  # type: ignore[arg-type]
                    filters=filters,
                )[branch]
            assert found == expected, (key, filters)
    finally:
        server.dispose()


def _counter_rows(events: list[EventBase]) -> list[tuple[str, datetime, str, str | None, Any]]:
    """The counter events' fields as the catch-up reads them from the log."""
    return [
        (e.type, e.occurred_at, e.counter_id, e.actor_id, getattr(e, "reason", None))
        for e in events
        if isinstance(e, CounterPaused | CounterResumed | CounterClosed)
    ]
