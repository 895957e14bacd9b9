"""Queries the console runs on the projection: queues, counters, tickets, alerts.

They read only the projection tables (never the in-memory state), so any thread
with a connection gets a consistent snapshot of what the last committed command
or pull left behind.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import date, datetime

from sqlalchemy import Connection, and_, func, select, update

from core.values import TicketNumber
from sync.client.outbox import now_iso
from sync.client.store import alerts, counters, services, sync_state, tickets
from sync.client.views import Alert, CounterView, ServiceView, TicketView

_CALL_ORDER = (
    tickets.c.queue_priority,
    tickets.c.queue_band,
    tickets.c.queue_ordinal,
    tickets.c.id,
)


def waiting(conn: Connection, service_id: str | None = None) -> list[TicketView]:
    """Waiting tickets in call order (of one service, or of all grouped by service)."""
    query = select(tickets).where(tickets.c.status == "waiting")
    if service_id is not None:
        query = query.where(tickets.c.service_id == service_id)
    query = query.order_by(tickets.c.service_id, *_CALL_ORDER)
    return [TicketView.from_row(r) for r in conn.execute(query)]


def waiting_grouped(conn: Connection) -> dict[str, list[TicketView]]:
    """All waiting tickets by service id, each list in call order."""
    grouped: dict[str, list[TicketView]] = {}
    for view in waiting(conn):
        grouped.setdefault(view.service_id, []).append(view)
    return grouped


def tickets_by_id(conn: Connection, ids: Iterable[str]) -> list[TicketView]:
    wanted, found = sorted(ids), []
    for start in range(0, len(wanted), 500):  # SQLite caps the parameters of one query
        chunk = wanted[start : start + 500]
        query = select(tickets).where(tickets.c.id.in_(chunk))
        found += [TicketView.from_row(r) for r in conn.execute(query)]
    return found


def parked(conn: Connection, counter_id: str | None = None) -> list[TicketView]:
    """Parked tickets (of those parked at one counter), longest-waiting first."""
    query = select(tickets).where(tickets.c.status == "parked")
    if counter_id is not None:
        query = query.where(tickets.c.parked_by == counter_id)
    query = query.order_by(tickets.c.issued_at, tickets.c.id)
    return [TicketView.from_row(r) for r in conn.execute(query)]


def ticket(conn: Connection, ticket_id: str) -> TicketView | None:
    row = conn.execute(select(tickets).where(tickets.c.id == ticket_id)).first()
    return TicketView.from_row(row) if row else None


def ticket_by_number(conn: Connection, number: str, day: date) -> TicketView | None:
    query = select(tickets).where(
        tickets.c.number == number, tickets.c.business_day == day.isoformat()
    )
    row = conn.execute(query).first()
    return TicketView.from_row(row) if row else None


def counter_views(conn: Connection) -> list[CounterView]:
    current = tickets.alias("current")
    query = (
        select(counters, current.c.number)
        .select_from(counters.outerjoin(current, current.c.id == counters.c.current_ticket_id))
        .order_by(counters.c.name, counters.c.id)
    )
    return [
        CounterView(
            id=r.id,
            name=r.name,
            status=r.status,
            pause_reason=r.pause_reason,
            current_ticket_id=r.current_ticket_id,
            current_ticket_number=r.number,
            staff_id=r.staff_id,
            work_profile=tuple(json.loads(r.work_profile)),
        )
        for r in conn.execute(query)
    ]


def service_views(conn: Connection) -> list[ServiceView]:
    query = (
        select(tickets.c.service_id, func.count())
        .where(tickets.c.status == "waiting")
        .group_by(tickets.c.service_id)
    )
    counts = {service_id: int(n) for service_id, n in conn.execute(query)}
    listing = select(services).order_by(services.c.code, services.c.id)
    return [
        ServiceView(r.id, r.code, r.name, r.target_wait_s, bool(r.active), counts.get(r.id, 0))
        for r in conn.execute(listing)
    ]


def alert_views(conn: Connection, include_acknowledged: bool) -> list[Alert]:
    query = select(alerts).order_by(alerts.c.id)
    if not include_acknowledged:
        query = query.where(alerts.c.acknowledged_at.is_(None))
    return [
        Alert(
            id=r.id,
            kind=r.kind,
            event_id=r.event_id,
            ticket_number=r.ticket_number,
            description=r.description,
            reason=r.reason,
            created_at=datetime.fromisoformat(r.created_at),
        )
        for r in conn.execute(query)
    ]


def acknowledge(conn: Connection, ids: Iterable[int]) -> None:
    conn.execute(
        update(alerts)
        .where(and_(alerts.c.id.in_(list(ids)), alerts.c.acknowledged_at.is_(None)))
        .values(acknowledged_at=now_iso())
    )


def last_synced_at(conn: Connection) -> datetime | None:
    value = conn.execute(select(sync_state.c.last_synced_at)).scalar_one_or_none()
    return datetime.fromisoformat(value) if value else None


class ConsoleReads(ABC):
    """The console's read API, mixed into :class:`sync.client.cache.LocalCache`."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Connection]: ...

    @abstractmethod
    def _today(self, at: datetime | None) -> date: ...

    def waiting(self, service_id: str) -> list[TicketView]:
        """Waiting tickets of one service, in the order they will be called."""
        with self._reading() as conn:
            return waiting(conn, service_id)

    def waiting_by_service(self) -> dict[str, list[TicketView]]:
        with self._reading() as conn:
            return waiting_grouped(conn)

    def parked(self, counter_id: str | None = None) -> list[TicketView]:
        """Parked tickets, oldest first; each view's ``parked_by`` names its counter.

        With ``counter_id``, only those parked at that counter (the ones its staff
        return to the queue).
        """
        with self._reading() as conn:
            return parked(conn, counter_id)

    def counters(self) -> list[CounterView]:
        with self._reading() as conn:
            return counter_views(conn)

    def services(self) -> list[ServiceView]:
        with self._reading() as conn:
            return service_views(conn)

    def ticket(self, ticket_id: str) -> TicketView | None:
        with self._reading() as conn:
            return ticket(conn, ticket_id)

    def ticket_by_number(self, number: str, business_day: date | None = None) -> TicketView | None:
        """The ticket showing ``number`` ("A42" or "A042") on a day (default: today)."""
        day = business_day or self._today(None)
        with self._reading() as conn:
            return ticket_by_number(conn, str(TicketNumber.parse(number)), day)

    def last_synced_at(self) -> datetime | None:
        with self._reading() as conn:
            return last_synced_at(conn)

    def alerts(self, include_acknowledged: bool = False) -> list[Alert]:
        """Rejections and numbering warnings, oldest first (unacknowledged by default)."""
        with self._reading() as conn:
            return alert_views(conn, include_acknowledged)
