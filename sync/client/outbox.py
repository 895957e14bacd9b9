"""Rows of the outbox, the confirmed log and the alerts table, to and from memory.

Kept apart from the operations so that each operation reads as what it decides,
and every write of a given table goes through one function.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeGuard

from pydantic_core import to_json as encode_json
from sqlalchemy import Connection, delete, insert, select, update

from core.events import EVENT_TYPES, EventBase, event_to_dict, parse_event, validate_events
from core.state import BranchState
from sync.client.replica import OutboxEntry
from sync.client.store import alerts, driver, events, outbox
from sync.client.views import AlertKind, Rejection, describe, ticket_number


def to_json(event: EventBase) -> str:
    return dumps(event_to_dict(event))


def dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def dumps_pulled(body: dict[str, Any]) -> str:
    """The stored form of a pulled event's JSON object: compact, keys as the service sent them.

    Encoded by pydantic-core, several times faster than :mod:`json` here: a first sync
    stores every event of the log. Non-ASCII text is kept as UTF-8 rather than
    escaped; both read back the same.
    """
    return encode_json(body).decode()


# A UUID as the service writes it (and str(uuid.UUID(...)) gives): the form the log
# stores ids in, checked without building a UUID object per event.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch


def _is_uuid(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _UUID(value) is not None


def unfolded_ids(body: dict[str, Any]) -> tuple[str, str | None]:
    """``(event id, ticket id)`` of a pulled event stored without being parsed.

    Only while a new cache adopts the service's state (see
    :meth:`sync.client.cache.LocalCache.apply_pull`): the events are parsed when
    their tickets' KPI facts are written, or if the log is ever replayed. Raises
    ValueError for a body that does not look like an event of the log.
    """
    event_id, ticket_id = body.get("id"), body.get("ticket_id")
    if body.get("type") not in EVENT_TYPES or not _is_uuid(event_id):
        raise ValueError(f"not an event of the log: {str(body)[:200]}")
    if ticket_id is None:
        return event_id, None
    if not _is_uuid(ticket_id):
        raise ValueError(f"event {event_id}: ticket_id is not a UUID")
    return event_id, ticket_id


_STORE_CONFIRMED = "INSERT INTO events (server_seq, event_id, body, ticket_id) VALUES (?, ?, ?, ?)"
_ADD_ENTRY = (
    "INSERT INTO outbox (device_seq, event_id, body, status, server_seq, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def load_confirmed(conn: Connection, after: int = 0) -> Iterator[EventBase]:
    """The confirmed events after ``server_seq`` ``after``, in log order."""
    query = select(events.c.body).where(events.c.server_seq > after)
    for (body,) in conn.execute(query.order_by(events.c.server_seq)):
        yield parse_event(body)


def parse_pulled(bodies: list[dict[str, Any]]) -> list[EventBase]:
    """Pulled events parsed, as :func:`core.events.parse_event` parses them.

    One validation call for the whole page; if it fails, the events are parsed
    one by one so that the error is the one ``parse_event`` raises.
    """
    page = validate_events(bodies)
    return [parse_event(b) for b in bodies] if page is None else page


def store_confirmed(conn: Connection, rows: Iterable[tuple[int, str, str, str | None]]) -> None:
    """Append ``(server_seq, event id, JSON body, ticket id)`` rows to the confirmed log.

    The ticket id (None for a counter event) is what :mod:`sync.client.kpi_store`
    finds a ticket's confirmed history by.
    """
    # One executemany straight to the driver: a page is thousands of rows.
    values = list(rows)
    if values:
        conn.exec_driver_sql(_STORE_CONFIRMED, values)


def load_tail(conn: Connection) -> list[OutboxEntry]:
    query = select(outbox.c.device_seq, outbox.c.body, outbox.c.status, outbox.c.server_seq)
    return [
        OutboxEntry(seq, parse_event(body), status, server_seq)
        for seq, body, status, server_seq in conn.execute(query.order_by(outbox.c.device_seq))
    ]


def add_entries(conn: Connection, entries: list[OutboxEntry]) -> None:
    created = now_iso()
    # Every local command writes here: a prepared statement of the driver's.
    driver(conn).executemany(
        _ADD_ENTRY,
        [
            (e.device_seq, str(e.event.id), to_json(e.event), e.status, e.server_seq, created)
            for e in entries
        ],
    )


def save_status(conn: Connection, entry: OutboxEntry) -> None:
    conn.execute(
        update(outbox)
        .where(outbox.c.device_seq == entry.device_seq)
        .values(status=entry.status, server_seq=entry.server_seq)
    )


def remove(conn: Connection, entries: Iterable[OutboxEntry]) -> None:
    seqs = [e.device_seq for e in entries]
    if seqs:
        conn.execute(delete(outbox).where(outbox.c.device_seq.in_(seqs)))


def rejection(
    state: BranchState, entry: OutboxEntry, reason: str, source: str = "service"
) -> Rejection:
    return Rejection(
        event_id=str(entry.event.id),
        ticket_number=ticket_number(state, entry.event),
        description=describe(state, entry.event),
        reason=reason,
        source="rebase" if source == "rebase" else "service",
    )


def record_alert(
    conn: Connection,
    kind: AlertKind,
    description: str,
    reason: str,
    *,
    event_id: str | None = None,
    number: str | None = None,
) -> None:
    conn.execute(
        insert(alerts).values(
            kind=kind,
            event_id=event_id,
            ticket_number=number,
            description=description,
            reason=reason,
            created_at=now_iso(),
        )
    )


def record_rejections(conn: Connection, rejections: Iterable[Rejection]) -> None:
    for r in rejections:
        record_alert(
            conn, "rejected", r.description, r.reason, event_id=r.event_id, number=r.ticket_number
        )
