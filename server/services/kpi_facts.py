"""Keeping ``kpi_facts`` in line with the accepted events of a branch.

A ticket's facts depend only on its own events, so each write rewrites the rows of
the tickets it touched from their accepted history (``queue_events.ticket_id`` is
indexed), in the caller's transaction, after the new events were inserted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, insert, select
from sqlalchemy.orm import Session

from core.errors import MalformedEvent
from core.events import EventBase, parse_event
from core.kpi_rows import FactRow, fact_rows
from server.models import Branch, KpiFact, QueueEvent

_CHUNK = 500
FACTS = cast(Table, KpiFact.__table__)


def write_facts(
    session: Session | Connection,
    tenant_id: uuid.UUID,
    branch_id: uuid.UUID,
    time_zone: str,
    events: Iterable[EventBase],
) -> None:
    """Rewrite the facts of every ticket ``events`` name."""
    named = {getattr(e, "ticket_id", None) for e in events}
    ids = sorted(uuid.UUID(t) for t in named if isinstance(t, str))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        history = [
            parse_event(payload)
            for (payload,) in session.execute(
                select(QueueEvent.payload)
                .where(
                    QueueEvent.ticket_id.in_(chunk),
                    QueueEvent.branch_id == branch_id,
                    QueueEvent.status == "accepted",
                )
                .order_by(QueueEvent.server_seq)
            )
        ]
        session.execute(delete(KpiFact).where(KpiFact.ticket_id.in_(chunk)))
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
