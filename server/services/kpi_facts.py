"""Keeping ``kpi_facts`` in line with the accepted events of a branch.

A ticket's facts depend only on its own events, so each write rewrites the rows of
the tickets it touched from their accepted history (``queue_events.ticket_id`` is
indexed): the events before the new ones from the log, the new ones as the caller
has them already parsed; in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, select
from sqlalchemy.orm import Session

from core.errors import MalformedEvent
from core.events import EventBase, parse_event
from core.kpi_rows import FactRow, fact_rows
from server.models import Branch, KpiFact, QueueEvent

_CHUNK = 500
FACTS = cast(Table, KpiFact.__table__)


_EVENTS = cast(Table, QueueEvent.__table__).c
# Built once on table columns: this runs for every pushed batch and every ticket action.
_EARLIER_HISTORY = (
    select(_EVENTS.payload)
    .where(
        _EVENTS.ticket_id.in_(bindparam("ids", expanding=True)),
        _EVENTS.branch_id == bindparam("branch_id"),
        _EVENTS.status == "accepted",
        _EVENTS.server_seq < bindparam("before"),
    )
    .order_by(_EVENTS.server_seq)
)
_DROP_FACTS = delete(FACTS).where(FACTS.c.ticket_id.in_(bindparam("ids", expanding=True)))


def write_facts(
    session: Session | Connection,
    tenant_id: uuid.UUID,
    branch_id: uuid.UUID,
    time_zone: str,
    events: Sequence[EventBase],
    first_seq: int,
) -> None:
    """Rewrite the facts of every ticket ``events`` name.

    ``events`` are the ones just accepted, in order, the first with ``server_seq``
    ``first_seq``: only the history before them is read back (and parsed) from the
    log, and the rows go in with one ``executemany`` per chunk of tickets.
    """
    fresh: dict[str, list[EventBase]] = {}
    for event in events:
        ticket_id = getattr(event, "ticket_id", None)
        if isinstance(ticket_id, str):
            fresh.setdefault(ticket_id, []).append(event)
    ids = sorted(fresh)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        keys = [uuid.UUID(t) for t in chunk]
        params = {"ids": keys, "branch_id": branch_id, "before": first_seq}
        history = [parse_event(p) for (p,) in session.execute(_EARLIER_HISTORY, params)]
        for ticket_id in chunk:
            history.extend(fresh[ticket_id])
        session.execute(_DROP_FACTS, {"ids": keys})
        insert_facts(session, tenant_id, branch_id, fact_rows(history, time_zone))


def insert_facts(
    session: Session | Connection, tenant_id: uuid.UUID, branch_id: uuid.UUID, rows: list[FactRow]
) -> None:
    if rows:
        session.execute(insert(FACTS), [fact_dict(tenant_id, branch_id, r) for r in rows])


def fact_dict(tenant_id: uuid.UUID, branch_id: uuid.UUID, row: FactRow) -> dict[str, Any]:
    return {
        "ticket_id": uuid.UUID(row.ticket_id),
        "ord": row.ord,
        "tenant_id": tenant_id,
        "branch_id": branch_id,
        "kind": row.kind,
        "service_id": row.service_id,
        "counter_id": row.counter_id,
        "staff_id": row.staff_id,
        "local_day": row.local_day,
        "hour_start": row.hour_start,
        "value": row.value,
        "no_show": int(row.no_show),
    }


def rebuild_all_facts(conn: Connection) -> None:
    """Every branch's facts again from its accepted log (the migration that adds them)."""
    conn.execute(delete(KpiFact))
    for tenant_id, branch_id, zone in conn.execute(
        select(Branch.tenant_id, Branch.id, Branch.time_zone)
    ):
        history: list[EventBase] = []
        for (payload,) in conn.execute(
            select(QueueEvent.payload)
            .where(
                QueueEvent.branch_id == branch_id,
                QueueEvent.status == "accepted",
                QueueEvent.ticket_id.is_not(None),
            )
            .order_by(QueueEvent.server_seq)
        ):
            try:
                history.append(parse_event(payload))
            except MalformedEvent:  # stored by hand or by a bug: nothing to count
                continue
        insert_facts(conn, tenant_id, branch_id, fact_rows(history, zone))
