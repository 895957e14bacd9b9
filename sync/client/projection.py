"""The projection tables (tickets, counters, services) written from the live state.

The console reads these tables, and the local KPI queries run on them; they are a
pure function of the live :class:`core.state.BranchState`, so the cache writes
only the rows an operation may have changed (the tickets its events name, plus
every counter: a branch has a handful) in the same transaction as the events.
:func:`matches` compares the whole table with the state on start-up, so a file
edited by hand or by an older build is rebuilt rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.dialects import sqlite

from core.state import BranchState, Counter, Ticket
from sync.client.store import counters, driver, services, tickets
from sync.protocol import ReferenceData

_HASHED_OUT = ("unsynced", "queue_priority", "queue_band", "queue_ordinal")


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is UTC:  # most are; converting costs more than the formatting
        return value.isoformat()
    return value.astimezone(UTC).isoformat()


def ticket_values(ticket: Ticket, unsynced: bool) -> tuple[Any, ...]:
    """A ticket's row as a tuple in the order of :data:`TICKET_COLUMNS` (the table's)."""
    customer = ticket.customer
    key = ticket.queue_key
    return (
        ticket.id,
        ticket.number,
        ticket.service_id,
        ticket.business_day.isoformat(),
        ticket.status.value,
        int(ticket.priority),
        ticket.channel.value,
        ticket.counter_id,
        customer.name if customer else None,
        customer.email if customer else None,
        customer.phone if customer else None,
        customer.notes if customer else None,
        _iso(ticket.issued_at),
        _iso(ticket.appointment_at),
        _iso(ticket.segment_started_at),
        _iso(ticket.called_at),
        _iso(ticket.service_started_at),
        _iso(ticket.finished_at),
        ticket.recalls,
        ticket.transfers,
        key[0] if key else None,
        key[1] if key else None,
        key[2] if key else None,
        int(unsynced),
        ticket.parked_by,
    )


TICKET_COLUMNS = tuple(tickets.columns.keys())
# Written straight to the driver with executemany: a page of a first sync is
# thousands of rows, and building SQLAlchemy parameters per row costs more than SQLite.
_PUT_TICKETS = str(insert(tickets).prefix_with("OR REPLACE").compile(dialect=sqlite.dialect()))
_ALL_TICKETS = str(
    select(*(tickets.c[name] for name in TICKET_COLUMNS)).compile(dialect=sqlite.dialect())
)


COUNTER_COLUMNS = tuple(counters.columns.keys())
_PUT_COUNTER = str(insert(counters).prefix_with("OR REPLACE").compile(dialect=sqlite.dialect()))


def ticket_row(ticket: Ticket, unsynced: bool) -> dict[str, Any]:
    return dict(zip(TICKET_COLUMNS, ticket_values(ticket, unsynced), strict=True))


def counter_row(counter: Counter) -> dict[str, Any]:
    return {
        "id": counter.id,
        "name": counter.name,
        "status": counter.status.value,
        "pause_reason": counter.pause_reason,
        "current_ticket_id": counter.current_ticket_id,
        "staff_id": counter.staff_id,
        "work_profile": json.dumps(list(counter.work_profile)),
    }


def write_tickets(
    conn: Connection, state: BranchState, ids: Iterable[str], unsynced: set[str]
) -> None:
    """Rewrite the rows of ``ids`` from ``state``; ids no longer in it are deleted."""
    rows, gone = [], []
    known = state.tickets
    for ticket_id in set(ids):
        ticket = known.get(ticket_id)
        if ticket is None:
            gone.append(ticket_id)
        else:
            rows.append(ticket_values(ticket, ticket_id in unsynced))
    for start in range(0, len(gone), 500):  # SQLite caps the parameters of one statement
        conn.execute(delete(tickets).where(tickets.c.id.in_(gone[start : start + 500])))
    if rows:
        driver(conn).executemany(_PUT_TICKETS, rows)


def write_counters(
    conn: Connection, state: BranchState, written: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Rewrite the counter rows that differ from ``written`` (all when None).

    Returns the rows now stored, to pass as ``written`` next time.
    """
    rows = {c.id: counter_row(c) for c in state.counters.values()}
    if written is None:
        conn.execute(delete(counters).where(counters.c.id.not_in(list(rows))))
        changed = list(rows.values())
    else:
        changed = [row for cid, row in rows.items() if written.get(cid) != row]
    if changed:
        values = [tuple(row[name] for name in COUNTER_COLUMNS) for row in changed]
        driver(conn).executemany(_PUT_COUNTER, values)
    return rows


def write_services(conn: Connection, reference: ReferenceData) -> None:
    conn.execute(delete(services))
    rows = [
        {
            "id": s.id,
            "code": s.code,
            "name": s.name,
            "target_wait_s": s.target_wait_s,
            "active": int(s.active),
        }
        for s in reference.services
    ]
    if rows:
        conn.execute(insert(services), rows)


def rewrite(conn: Connection, state: BranchState, unsynced: set[str]) -> None:
    """Replace the ticket and counter tables with what ``state`` says."""
    conn.execute(delete(tickets))
    rows = [ticket_values(t, t.id in unsynced) for t in state.tickets.values()]
    if rows:
        conn.exec_driver_sql(_PUT_TICKETS, rows)
    write_counters(conn, state)


def matches(conn: Connection, state: BranchState, unsynced: set[str]) -> bool:
    """Whether the ticket and counter tables say exactly what ``state`` says."""
    # Plain tuples from the driver, compared row by row as they stream in: this
    # reads every ticket on each start-up, and holding both sides of 100,000
    # tickets at once would double the console's peak memory.
    known = state.tickets
    seen = 0
    with conn.exec_driver_sql(_ALL_TICKETS) as rows:
        for row in rows:
            ticket = known.get(row[0])
            if ticket is None or tuple(row) != ticket_values(ticket, row[0] in unsynced):
                return False
            seen += 1
    if seen != len(known):
        return False
    stored_counters = {r["id"]: dict(r) for r in conn.execute(select(counters)).mappings()}
    return stored_counters == {c.id: counter_row(c) for c in state.counters.values()}


def projection_hash(conn: Connection) -> str:
    """A digest of what the projection says about tickets, counters and queue order.

    Independent of row order and of which changes are still pending, so two
    consoles that folded the same confirmed events hash alike.
    """
    ticket_rows = [
        {k: v for k, v in r.items() if k not in _HASHED_OUT}
        for r in conn.execute(select(tickets).order_by(tickets.c.id)).mappings()
    ]
    queues: dict[str, list[str]] = {}
    waiting = (
        select(tickets.c.service_id, tickets.c.id)
        .where(tickets.c.queue_ordinal.is_not(None))
        .order_by(
            tickets.c.service_id,
            tickets.c.queue_priority,
            tickets.c.queue_band,
            tickets.c.queue_ordinal,
            tickets.c.id,
        )
    )
    for service_id, ticket_id in conn.execute(waiting):
        queues.setdefault(service_id, []).append(ticket_id)
    counter_rows = [
        dict(r) for r in conn.execute(select(counters).order_by(counters.c.id)).mappings()
    ]
    body = json.dumps(
        {"tickets": ticket_rows, "counters": counter_rows, "queues": queues},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()
