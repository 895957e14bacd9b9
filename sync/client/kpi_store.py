"""Keeping the cache's KPI fact rows in line with the live state.

A ticket's facts (:func:`core.kpi_rows.fact_rows`) depend only on its own events,
so every write rewrites the rows of the tickets it touched from their live history:
the confirmed events (``events.ticket_id`` is indexed) then the outbox entries that
still apply. Rows are bucketed in the branch's zone; when the zone the rows were
written in (``kpi_meta``) is not the live one (new file, new reference data), every
row is rebuilt. Runs inside the cache's write transaction, like the projection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from core.events import EventBase, parse_event
from core.kpi_rows import FactRow, fact_rows
from sync.client.replica import OutboxEntry, ticket_of
from sync.client.store import events, kpi_facts, kpi_meta


def fact_row_dict(row: FactRow) -> dict[str, Any]:
    return {
        "ticket_id": row.ticket_id,
        "ord": row.ord,
        "kind": row.kind,
        "service_id": row.service_id,
        "counter_id": row.counter_id,
        "staff_id": row.staff_id,
        "local_day": row.local_day.isoformat(),
        "hour_start": row.hour_start,
        "value": row.value,
        "no_show": int(row.no_show),
    }


def write_facts(
    conn: Connection, time_zone: str, tail: Sequence[OutboxEntry], ticket_ids: Iterable[str]
) -> None:
    """Rewrite the facts of ``ticket_ids`` (all of them when the zone changed)."""
    stored_zone = conn.execute(select(kpi_meta.c.time_zone)).scalar_one_or_none()
    if stored_zone != time_zone:
        rebuild_facts(conn, time_zone, tail)
        return
    ids = sorted(set(ticket_ids))
    if not ids:
        return
    history: list[EventBase] = []
    for chunk in _chunks(ids, 500):
        query = (
            select(events.c.body).where(events.c.ticket_id.in_(chunk)).order_by(events.c.server_seq)
        )
        history.extend(parse_event(body) for (body,) in conn.execute(query))
    wanted = set(ids)
    history.extend(e.event for e in tail if e.applies and ticket_of(e.event) in wanted)
    for chunk in _chunks(ids, 500):
        conn.execute(delete(kpi_facts).where(kpi_facts.c.ticket_id.in_(chunk)))
    _insert(conn, fact_rows(history, time_zone))


def rebuild_facts(conn: Connection, time_zone: str, tail: Sequence[OutboxEntry]) -> None:
    """Every fact row again, from the confirmed log and the applying tail."""
    conn.execute(delete(kpi_facts))
    query = (
        select(events.c.body).where(events.c.ticket_id.is_not(None)).order_by(events.c.server_seq)
    )
    history = [parse_event(body) for (body,) in conn.execute(query)]
    history.extend(e.event for e in tail if e.applies and ticket_of(e.event) is not None)
    _insert(conn, fact_rows(history, time_zone))
    conn.execute(delete(kpi_meta))
    conn.execute(insert(kpi_meta).values(id=1, time_zone=time_zone))


def counter_events(conn: Connection, tail: Sequence[OutboxEntry]) -> list[EventBase]:
    """The live counter events (pauses are folded from them at query time), in order."""
    query = select(events.c.body).where(events.c.ticket_id.is_(None)).order_by(events.c.server_seq)
    found = [parse_event(body) for (body,) in conn.execute(query)]
    found.extend(e.event for e in tail if e.applies and ticket_of(e.event) is None)
    return found


def _insert(conn: Connection, rows: list[FactRow]) -> None:
    if rows:
        conn.execute(insert(kpi_facts), [fact_row_dict(r) for r in rows])


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
