"""What a customer or kiosk is told about a ticket: its place and an estimated wait.

The estimate is deliberately simple and explainable:
``position × median service time ÷ open counters``, where the median is over the
service's last 20 completions of the ticket's business day (completed minus
service started, from the ``tickets`` projection; 300 s when there are none yet),
and the open counters are those open (not paused, not closed) whose work profile
includes the service, at least 1 so a branch that has not opened yet still
answers.
"""

from __future__ import annotations

import statistics
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import String, bindparam, select, type_coerce
from sqlalchemy.orm import Session

from core.state import BranchState, CounterStatus, Ticket, TicketStatus
from server.db import DriverQuery
from server.models import Ticket as TicketRow

DEFAULT_SERVICE_TIME_S = 300
RECENT_COMPLETIONS = 20


@dataclass(frozen=True, slots=True)
class TicketView:
    """A ticket as the API shows it; ``position`` and the estimate only while waiting."""

    id: uuid.UUID
    number: str
    status: TicketStatus
    service_id: uuid.UUID
    counter_id: uuid.UUID | None
    position: int | None
    estimated_wait_s: int | None
    issued_at: datetime
    called_at: datetime | None


def view_of(session: Session, state: BranchState, ticket: Ticket) -> TicketView:
    """The view of ``ticket`` in ``state`` (the branch's authoritative state)."""
    position = state.position(ticket)
    estimate = None
    if position is not None:
        per_ticket = median_service_time_s(
            session, uuid.UUID(state.branch_id), uuid.UUID(ticket.service_id), ticket.business_day
        )
        estimate = round(position * per_ticket / open_counters(state, ticket.service_id))
    return TicketView(
        id=uuid.UUID(ticket.id),
        number=ticket.number,
        status=ticket.status,
        service_id=uuid.UUID(ticket.service_id),
        counter_id=uuid.UUID(ticket.counter_id) if ticket.counter_id else None,
        position=position,
        estimated_wait_s=estimate,
        issued_at=ticket.issued_at,
        called_at=ticket.called_at,
    )


_TICKETS = TicketRow.__table__.c
# The times come back as the driver hands them (SQLite: ISO text; PostgreSQL: a
# naive datetime, as stored), without the column type's per-value conversion:
# only their difference is wanted.
_RECENT_COMPLETIONS = DriverQuery(
    select(type_coerce(_TICKETS.started_at, String), type_coerce(_TICKETS.finished_at, String))
    .where(
        _TICKETS.branch_id == bindparam("branch_id"),
        _TICKETS.service_id == bindparam("service_id"),
        _TICKETS.business_day == bindparam("day"),
        _TICKETS.status == TicketStatus.DONE.value,
        _TICKETS.started_at.is_not(None),
        _TICKETS.finished_at.is_not(None),
    )
    .order_by(_TICKETS.finished_at.desc())
    .limit(RECENT_COMPLETIONS)
)


def median_service_time_s(
    session: Session, branch_id: uuid.UUID, service_id: uuid.UUID, day: date
) -> float:
    """Median of the service's last completions that day, or the default when none."""
    params = {"branch_id": branch_id, "service_id": service_id, "day": day}
    rows = _RECENT_COMPLETIONS.rows(session.connection(), params)
    durations = [(_time(done) - _time(start)).total_seconds() for start, done in rows]
    return statistics.median(durations) if durations else DEFAULT_SERVICE_TIME_S


def _time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def open_counters(state: BranchState, service_id: str) -> int:
    """Open counters that call from ``service_id``; at least 1."""
    serving = sum(
        1
        for counter in state.counters.values()
        if counter.status is CounterStatus.OPEN and service_id in counter.work_profile
    )
    return max(1, serving)
