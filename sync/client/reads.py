"""Queries the console runs on the projection: queues, counters, tickets, alerts.

They read only the projection tables (never the in-memory state), so any thread
with a connection gets a consistent snapshot of what the last committed command
or pull left behind.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import date, datetime

from sqlalchemy import (
    ClauseElement,
    Connection,
    and_,
    bindparam,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import sqlite

from core.values import TicketNumber
from sync.client.outbox import now_iso
from sync.client.store import alerts, counters, driver, outbox, services, sync_state, tickets
from sync.client.views import (
    Alert,
    ConsoleState,
    CounterView,
    QueueRow,
    ServiceView,
    TicketView,
)

UNSENT = ("pending", "void")  # outbox rows still to push


def _sql(statement: ClauseElement) -> str:
    """``statement`` as SQLite text with ``?`` for each bound parameter, in order."""
    return str(statement.compile(dialect=sqlite.dialect()))


# What the console reads after every action runs through the driver's prepared
# statements (see sync.client.store.driver); the rest through SQLAlchemy.
_TICKET_COLUMNS = tuple(tickets.columns.keys())
_PARKED_ORDER = (tickets.c.issued_at, tickets.c.id)
_IS_PARKED = tickets.c.status == literal_column("'parked'")
_TICKET = _sql(select(tickets).where(tickets.c.id == bindparam("id")))
_TICKETS_BY_ID = _sql(  # the ids as one JSON array: one statement for any number of them
    select(tickets).where(
        tickets.c.id.in_(select(func.json_each(bindparam("ids")).table_valued("value").c.value))
    )
)
_CURRENT_TICKET = _sql(
    select(tickets).where(
        tickets.c.id
        == select(counters.c.current_ticket_id)
        .where(counters.c.id == bindparam("counter"))
        .scalar_subquery()
    )
)
_PARKED = _sql(select(tickets).where(_IS_PARKED).order_by(*_PARKED_ORDER))
_PARKED_AT = _sql(
    select(tickets)
    .where(_IS_PARKED, tickets.c.parked_by == bindparam("counter"))
    .order_by(*_PARKED_ORDER)
)
_LAST_SYNCED = _sql(select(sync_state.c.last_synced_at))
_OPEN_ALERTS = _sql(
    select(
        alerts.c.id,
        alerts.c.kind,
        alerts.c.event_id,
        alerts.c.ticket_number,
        alerts.c.description,
        alerts.c.reason,
        alerts.c.created_at,
    )
    .where(alerts.c.acknowledged_at.is_(None))
    .order_by(alerts.c.id)
)
_OUTBOX_SIZE = str(
    select(func.count())
    .select_from(outbox)
    .where(outbox.c.status.in_(UNSENT))
    .compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
)


def _views(rows: Iterable[tuple[object, ...]]) -> list[TicketView]:
    return [TicketView.from_mapping(dict(zip(_TICKET_COLUMNS, row, strict=True))) for row in rows]


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


def waiting_views_grouped(conn: Connection) -> dict[str, list[TicketView]]:
    """All waiting tickets by service id as full views, each list in call order."""
    grouped: dict[str, list[TicketView]] = {}
    for view in waiting(conn):
        grouped.setdefault(view.service_id, []).append(view)
    return grouped


# A queue row's fields, in QueueRow order; NULL keys read as 0, as QueueRow.of does.
_ROW_KEY = tuple(func.coalesce(c, 0) for c in _CALL_ORDER[:3])
_ROW_COLUMNS = (
    *_ROW_KEY,
    tickets.c.id,
    tickets.c.number,
    tickets.c.service_id,
    func.coalesce(tickets.c.segment_started_at, tickets.c.issued_at),
    tickets.c.priority,
    tickets.c.channel,
    tickets.c.unsynced,
)


def queue_rows(conn: Connection, service_id: str | None = None) -> list[QueueRow]:
    """Waiting tickets as compact rows, by service and in call order.

    Only the columns a queue table shows are read, and the service ids and
    channel names are shared between rows: a branch with 100,000 waiting tickets
    costs about 30 MB here instead of four times that as :class:`TicketView`.
    """
    query = select(*_ROW_COLUMNS).where(tickets.c.status == "waiting")
    if service_id is not None:
        query = query.where(tickets.c.service_id == service_id)
    query = query.order_by(tickets.c.service_id, *_ROW_KEY, tickets.c.id)
    shared: dict[str, str] = {}  # one copy of each service id and channel name
    parse = datetime.fromisoformat
    return [
        QueueRow(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            shared.setdefault(r[5], r[5]),
            parse(r[6]).timestamp(),
            r[7],
            shared.setdefault(r[8], r[8]),
            bool(r[9]),
        )
        for r in conn.execute(query)
    ]


def waiting_grouped(conn: Connection) -> dict[str, list[QueueRow]]:
    """All waiting tickets by service id as compact rows, each list in call order."""
    grouped: dict[str, list[QueueRow]] = {}
    for row in queue_rows(conn):
        queue = grouped.get(row.service_id)
        if queue is None:
            queue = grouped[row.service_id] = []
        queue.append(row)
    return grouped


def tickets_by_id(conn: Connection, ids: Iterable[str]) -> list[TicketView]:
    wanted = sorted(ids)
    if not wanted:
        return []
    return _views(driver(conn).execute(_TICKETS_BY_ID, (json.dumps(wanted),)))


def parked(conn: Connection, counter_id: str | None = None) -> list[TicketView]:
    """Parked tickets (of those parked at one counter), longest-waiting first."""
    raw = driver(conn)
    if counter_id is None:
        return _views(raw.execute(_PARKED))
    return _views(raw.execute(_PARKED_AT, (counter_id,)))


def ticket(conn: Connection, ticket_id: str) -> TicketView | None:
    found = _views(driver(conn).execute(_TICKET, (ticket_id,)))
    return found[0] if found else None


def current_ticket(conn: Connection, counter_id: str) -> TicketView | None:
    """The ticket counter ``counter_id`` is calling or serving, if any."""
    found = _views(driver(conn).execute(_CURRENT_TICKET, (counter_id,)))
    return found[0] if found else None


def ticket_by_number(conn: Connection, number: str, day: date) -> TicketView | None:
    query = select(tickets).where(
        tickets.c.number == number, tickets.c.business_day == day.isoformat()
    )
    row = conn.execute(query).first()
    return TicketView.from_row(row) if row else None


_CURRENT = tickets.alias("current")
_COUNTER_VIEWS = str(
    select(
        counters.c.id,
        counters.c.name,
        counters.c.status,
        counters.c.pause_reason,
        counters.c.current_ticket_id,
        _CURRENT.c.number,
        counters.c.staff_id,
        counters.c.work_profile,
    )
    .select_from(counters.outerjoin(_CURRENT, _CURRENT.c.id == counters.c.current_ticket_id))
    .order_by(counters.c.name, counters.c.id)
    .compile(dialect=sqlite.dialect())
)


def counter_views(conn: Connection) -> list[CounterView]:
    return [
        CounterView(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(json.loads(r[7])))
        for r in driver(conn).execute(_COUNTER_VIEWS)
    ]


def service_views(conn: Connection, counts: Mapping[str, int] | None = None) -> list[ServiceView]:
    """The services, with how many tickets wait in each (counted unless ``counts`` says)."""
    if counts is None:
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
    if not include_acknowledged:
        return [
            Alert(r[0], r[1], r[2], r[3], r[4], r[5], datetime.fromisoformat(r[6]))
            for r in driver(conn).execute(_OPEN_ALERTS)
        ]
    query = select(alerts).order_by(alerts.c.id)
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
    row = driver(conn).execute(_LAST_SYNCED).fetchone()
    return datetime.fromisoformat(row[0]) if row and row[0] else None


def outbox_size(conn: Connection) -> int:
    """How many changes made here are still to be sent."""
    return int(driver(conn).execute(_OUTBOX_SIZE).fetchone()[0])


def console_state(conn: Connection, counter_id: str | None) -> ConsoleState:
    """What the console shows besides the queues, for the counter ``counter_id``."""
    all_counters = counter_views(conn)
    counter = next((c for c in all_counters if c.id == counter_id), None)
    current_id = counter.current_ticket_id if counter is not None else None
    return ConsoleState(
        counters=all_counters,
        counter=counter,
        current=ticket(conn, current_id) if current_id else None,
        parked=parked(conn, counter_id) if counter_id else [],
        last_synced_at=last_synced_at(conn),
        alerts=alert_views(conn, include_acknowledged=False),
        outbox=outbox_size(conn),
    )


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
            return waiting_views_grouped(conn)

    def queue_rows(self, service_id: str | None = None) -> list[QueueRow]:
        """Waiting tickets as compact :class:`QueueRow` values, by service, in call order."""
        with self._reading() as conn:
            return queue_rows(conn, service_id)

    def parked(self, counter_id: str | None = None) -> list[TicketView]:
        """Parked tickets, oldest first; each view's ``parked_by`` names its counter.

        With ``counter_id``, only those parked at that counter (the ones its staff
        return to the queue).
        """
        with self._reading() as conn:
            return parked(conn, counter_id)

    def console_state(self, counter_id: str | None) -> ConsoleState:
        """Counters, ``counter_id``'s counter, its current and parked tickets, the last
        sync time and the open alerts: all read in one transaction."""
        with self._reading() as conn:
            return console_state(conn, counter_id)

    def counters(self) -> list[CounterView]:
        with self._reading() as conn:
            return counter_views(conn)

    def services(self, waiting_counts: Mapping[str, int] | None = None) -> list[ServiceView]:
        """The branch's services by code; ``waiting_counts``, when the caller knows them,
        saves counting the waiting tickets again."""
        with self._reading() as conn:
            return service_views(conn, waiting_counts)

    def ticket(self, ticket_id: str) -> TicketView | None:
        with self._reading() as conn:
            return ticket(conn, ticket_id)

    def current_ticket(self, counter_id: str) -> TicketView | None:
        with self._reading() as conn:
            return current_ticket(conn, counter_id)

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
