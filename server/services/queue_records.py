"""Writing a branch's events: the ``queue_events`` rows and the ``tickets`` projection.

Both are written in the caller's transaction from the *folded* core state, so
the projection always says what :class:`core.state.BranchState` says.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Dialect, bindparam, insert, update
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator, TypeEngine

from core.errors import DomainError
from core.events import EventBase, TicketIssued, event_to_dict
from core.state import BranchState
from core.state import Ticket as CoreTicket
from server.db import DriverQuery, parse_uuid
from server.models import QueueEvent, Ticket, utc_now
from server.models.base import JSONType
from server.services.sync_hub import mark_appended


@dataclass(frozen=True, slots=True)
class EventRow:
    """One event about to be stored, with the verdict and the columns that point elsewhere."""

    event: EventBase
    server_seq: int | None = None
    reason: str | None = None  # set: rejected
    actor_user_id: uuid.UUID | None = None
    device_id: uuid.UUID | None = None


def ticket_uuid(event: EventBase) -> uuid.UUID | None:
    """The ticket an event is about, if any, as a UUID (canonical ids only: checked on issue)."""
    ticket_id = getattr(event, "ticket_id", None)
    return parse_uuid(ticket_id) if isinstance(ticket_id, str) else None


def need_canonical_uuid(ticket_id: str) -> None:
    """Refuse a ticket id that is not a UUID as ``str(uuid)`` writes it (rows key on UUIDs)."""
    try:
        canonical = str(uuid.UUID(ticket_id))
    except ValueError:
        canonical = None
    if canonical != ticket_id:
        raise DomainError(f"Ticket id {ticket_id!r} is not a UUID in canonical form")


def write_events(
    session: Session, tenant_id: uuid.UUID, branch_id: uuid.UUID, rows: Sequence[EventRow]
) -> None:
    """Insert the log rows; accepted ones carry a ``server_seq``, rejected ones a reason."""
    if not rows:
        return
    values: list[dict[str, Any]] = []
    received_at = utc_now()
    for row in rows:
        event = row.event
        with_device = row.device_id is not None and event.device_seq is not None
        try:
            ticket_id = ticket_uuid(event)
        except ValueError:  # only on rejected events: an accepted issue has a canonical id
            ticket_id = None
        values.append(
            {
                "id": event.id,
                "tenant_id": tenant_id,
                "branch_id": branch_id,
                "server_seq": row.server_seq,
                "device_id": row.device_id if with_device else None,
                "device_seq": event.device_seq if with_device else None,
                "type": type(event).model_fields["type"].default,
                "ticket_id": ticket_id,
                "occurred_at": event.occurred_at,
                "received_at": received_at,
                "actor_user_id": row.actor_user_id,
                "payload": event,  # written by _EventJSON
                "status": "rejected" if row.reason is not None else "accepted",
                "reason": row.reason,
            }
        )
    # The table, not the entity: a plain executemany, without the ORM's bulk machinery.
    _INSERT_EVENT.execute_many(session.connection(), values)
    if any(row.server_seq is not None for row in rows):
        mark_appended(session, branch_id)  # wakes live sync streams after the commit


def write_tickets(
    session: Session,
    tenant_id: uuid.UUID,
    branch_id: uuid.UUID,
    state: BranchState,
    events: Iterable[EventBase],
) -> None:
    """Insert issued tickets and bring every other touched ticket in line with ``state``."""
    issued: dict[str, None] = {}
    touched: dict[str, None] = {}
    for event in events:
        ticket_id = getattr(event, "ticket_id", None)
        if isinstance(event, TicketIssued):
            issued[event.ticket_id] = None
        elif isinstance(ticket_id, str) and ticket_id not in issued:
            touched[ticket_id] = None
    now = utc_now()
    if issued:
        _INSERT_TICKET.execute_many(
            session.connection(),
            [_new_row(tenant_id, branch_id, state.tickets[tid], now) for tid in issued],
        )
    if touched:
        changes = [
            {"ticket_id": parse_uuid(tid), **_changing(state.tickets[tid]), "updated_at": now}
            for tid in touched
        ]
        _UPDATE_TICKET.execute_many(session.connection(), changes)


class _EventJSON(TypeDecorator[Any]):
    """The ``payload`` parameter of a log insert: the core event, stored as its JSON.

    The column keeps its JSON type; on SQLite this parameter's text comes from
    pydantic-core in one call (``model_dump_json``), less than half the cost of a
    dict from ``event_to_dict`` and ``json.dumps`` of it (a push of 500 events
    writes 500). The text is compact, and characters outside ASCII are not
    escaped: the same JSON value. Other backends take ``event_to_dict``'s dict.
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(JSONType.dialect_impl(dialect))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return event_to_dict(value) if isinstance(value, EventBase) else value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        generic = super().bind_processor(dialect)
        if dialect.name != "sqlite":
            return generic

        def process(value: Any) -> Any:
            if isinstance(value, EventBase):
                return value.model_dump_json(exclude_none=True)
            return generic(value) if generic else value

        return process


_EVENT_COLUMNS = ("id", "tenant_id", "branch_id", "server_seq", "device_id", "device_seq")
_EVENT_COLUMNS += ("type", "ticket_id", "occurred_at", "received_at", "actor_user_id")
_EVENT_COLUMNS += ("payload", "status", "reason")
_INSERT_EVENT = DriverQuery(
    insert(QueueEvent.__table__).values(
        {
            name: bindparam(name, type_=_EventJSON()) if name == "payload" else bindparam(name)
            for name in _EVENT_COLUMNS
        }
    )
)
_TICKET_COLUMNS = ("id", "tenant_id", "branch_id", "number", "business_day", "priority")
_TICKET_COLUMNS += ("channel", "issued_at", "appointment_at", "customer_name", "customer_email")
_TICKET_COLUMNS += ("customer_phone", "notes", "status", "service_id", "counter_id", "called_at")
_TICKET_COLUMNS += ("started_at", "finished_at", "updated_at")
_INSERT_TICKET = DriverQuery(
    insert(Ticket.__table__).values({name: bindparam(name) for name in _TICKET_COLUMNS})
)
_UPDATE_TICKET = DriverQuery(
    update(Ticket.__table__)
    .where(Ticket.__table__.c.id == bindparam("ticket_id"))
    .values(
        {
            name: bindparam(name)
            for name in (
                "status",
                "service_id",
                "counter_id",
                "called_at",
                "started_at",
                "finished_at",
                "updated_at",
            )
        }
    )
)


def _changing(ticket: CoreTicket) -> dict[str, Any]:
    """The columns an event after the issue can change."""
    return {
        "status": ticket.status.value,
        "service_id": parse_uuid(ticket.service_id),
        "counter_id": parse_uuid(ticket.counter_id) if ticket.counter_id else None,
        "called_at": ticket.called_at,
        "started_at": ticket.service_started_at,
        "finished_at": ticket.finished_at,
    }


def _new_row(
    tenant_id: uuid.UUID, branch_id: uuid.UUID, ticket: CoreTicket, now: datetime
) -> dict[str, Any]:
    customer = ticket.customer
    return {
        "id": parse_uuid(ticket.id),
        "tenant_id": tenant_id,
        "branch_id": branch_id,
        "number": ticket.number,
        "business_day": ticket.business_day,
        "priority": int(ticket.priority),
        "channel": ticket.channel.value,
        "issued_at": ticket.issued_at,
        "appointment_at": ticket.appointment_at,
        "customer_name": customer.name if customer else None,
        "customer_email": customer.email if customer else None,
        "customer_phone": customer.phone if customer else None,
        "notes": customer.notes if customer else None,
        **_changing(ticket),
        "updated_at": now,
    }
