"""A :class:`core.state.BranchState` as text, and back.

Two uses, one format: a console's cache saves its confirmed state with it (so
opening the file need not replay the log, see :mod:`sync.client.snapshot`), and
the service sends a new device the branch's state in it with the first page of
its first pull (so the device need not fold the whole log, see
:mod:`sync.client.cache`). The body is JSON lines: a header with the branch,
services and counters, then lines of ticket rows and of issued numbers. The
values it holds were validated when their events were parsed; decoding rebuilds
them as they were, without validating them again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from sortedcontainers import SortedList

from core.events import Customer
from core.ordering import ServiceQueue, WaitingIndex
from core.state import (
    BranchState,
    Counter,
    CounterStatus,
    ServiceConfig,
    Ticket,
    TicketStatus,
)
from core.values import Channel, PriorityClass, TimeZoneName

FORMAT = 3  # bump when the body's layout changes
# Rows per line of the body: one JSON parse per line costs more than parsing the row
# itself, and a bounded line keeps the parsed rows of 100,000 tickets out of memory.
ROWS_PER_LINE = 500

# The fields this codec writes, in order; core growing or losing one makes
# knows_shapes() False until this module learns it, rather than dropping it silently.
STATE_FIELDS = (
    "branch_id",
    "time_zone",
    "day_starts_at_min",
    "services",
    "counters",
    "tickets",
    "numbers",
    "waiting",
    "applied",
)
SERVICE_FIELDS = ("id", "code", "name", "target_wait_s")
COUNTER_FIELDS = (
    "id",
    "name",
    "work_profile",
    "status",
    "pause_reason",
    "current_ticket_id",
    "staff_id",
)
TICKET_FIELDS = (
    "id",
    "number",
    "service_id",
    "business_day",
    "channel",
    "priority",
    "issued_at",
    "appointment_at",
    "customer",
    "status",
    "counter_id",
    "segment_started_at",
    "called_at",
    "service_started_at",
    "finished_at",
    "recalls",
    "transfers",
    "join_ordinal",
    "queue_key",
    "appointment_key",
    "parked_by",
)


def knows_shapes() -> bool:
    """Whether core's state has exactly the fields this codec writes."""
    shapes = (
        (BranchState, STATE_FIELDS),
        (ServiceConfig, SERVICE_FIELDS),
        (Counter, COUNTER_FIELDS),
        (Ticket, TICKET_FIELDS),
    )
    return all(tuple(f.name for f in dataclasses.fields(c)) == names for c, names in shapes)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _ticket(t: Ticket) -> list[Any]:
    customer = t.customer
    return [
        t.id,
        t.number,
        t.service_id,
        t.business_day.isoformat(),
        t.channel.value,
        int(t.priority),
        t.issued_at.isoformat(),
        _iso(t.appointment_at),
        None if customer is None else customer.model_dump(exclude_unset=True),
        t.status.value,
        t.counter_id,
        _iso(t.segment_started_at),
        _iso(t.called_at),
        _iso(t.service_started_at),
        _iso(t.finished_at),
        t.recalls,
        t.transfers,
        t.join_ordinal,
        t.queue_key,
        t.appointment_key,
        t.parked_by,
    ]


_CHANNELS = {c.value: c for c in Channel}
_PRIORITIES = {int(p): p for p in PriorityClass}
_STATUSES = {s.value: s for s in TicketStatus}


class _Shared:
    """One object per repeated value while decoding: the JSON parser makes a new
    string for every occurrence, and 100,000 tickets repeat a handful of service
    ids, days and counter ids (and each ticket id again in its queue key)."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.days: dict[str, date] = {}

    def text(self, value: str | None) -> str | None:
        return None if value is None else self.texts.setdefault(value, value)

    def day(self, value: str) -> date:
        found = self.days.get(value)
        if found is None:
            found = self.days[value] = date.fromisoformat(value)
        return found


def _key_of(value: list[Any] | None, ticket_id: str) -> Any:
    # The last element of a queue key is the ticket's id: use the ticket's own string.
    if value is None:
        return None
    return (*value[:-1], ticket_id) if value[-1] == ticket_id else tuple(value)


def _unticket(r: list[Any], shared: _Shared | None = None) -> Ticket:
    # The values were validated when their events were parsed: rebuild them as they were.
    shared = shared or _Shared()
    customer = None if r[8] is None else Customer.model_construct(**r[8])
    ticket_id = r[0]
    issued_at = datetime.fromisoformat(r[6])
    # A ticket joins its first queue when it is issued: one datetime for both.
    segment_started_at = issued_at if r[11] == r[6] else _instant(r[11])
    return Ticket(
        ticket_id,
        r[1],
        shared.text(r[2]) or r[2],
        shared.day(r[3]),
        _CHANNELS[r[4]],
        _PRIORITIES[r[5]],
        issued_at,
        _instant(r[7]),
        customer,
        _STATUSES[r[9]],
        shared.text(r[10]),
        segment_started_at,
        _instant(r[12]),
        _instant(r[13]),
        _instant(r[14]),
        r[15],
        r[16],
        r[17],
        _key_of(r[18], ticket_id),
        _key_of(r[19], ticket_id),
        shared.text(r[20]),
    )


def encode(state: BranchState) -> str:
    """``state`` as JSON lines (the waiting index is rebuilt from the tickets' queue keys).

    The first line holds the branch, its services and counters; then lines of up
    to :data:`ROWS_PER_LINE` tickets ("T" + a JSON array of rows) and of issued
    numbers ("N" + an array of rows). Lines let :func:`decode` parse a few hundred
    rows at a time.
    """
    header = {
        "branch_id": state.branch_id,
        "time_zone": state.time_zone.value,
        "day_starts_at_min": state.day_starts_at_min,
        "applied": state.applied,
        "services": [[s.id, s.code, s.name, s.target_wait_s] for s in state.services.values()],
        "counters": [
            [
                c.id,
                c.name,
                list(c.work_profile),
                c.status.value,
                c.pause_reason,
                c.current_ticket_id,
                c.staff_id,
            ]
            for c in state.counters.values()
        ],
        "queues": list(state.waiting.queues),  # services with a queue, even an empty one
    }
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    lines = [dumps(header)]
    tickets = [_ticket(t) for t in state.tickets.values()]
    numbers = [[day.isoformat(), n, tid] for (day, n), tid in state.numbers.items()]
    for kind, rows in (("T", tickets), ("N", numbers)):
        for start in range(0, len(rows), ROWS_PER_LINE):
            lines.append(kind + dumps(rows[start : start + ROWS_PER_LINE]))
    return "\n".join(lines)


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text``, one at a time (``io.StringIO`` would copy the whole text)."""
    start = 0
    while (end := text.find("\n", start)) >= 0:
        yield text[start:end]
        start = end + 1
    yield text[start:]


def decode(text: str) -> BranchState:
    # A line at a time: the parsed JSON of 100,000 tickets is never in memory at
    # once, only the rows of one line and the tickets built.
    lines = _lines(text)
    body = json.loads(next(lines))
    tickets: dict[str, Ticket] = {}
    numbers: dict[tuple[date, str], str] = {}
    shared = _Shared()
    for line in lines:
        kind, rows = line[:1], json.loads(line[1:])
        if kind == "T":
            for row in rows:
                tickets[row[0]] = _unticket(row, shared)
        elif kind == "N":
            for day, n, tid in rows:
                known = tickets.get(tid)
                if known is not None and known.number == n:
                    n, tid = known.number, known.id  # one string per number and per id
                numbers[(shared.day(day), n)] = tid
        else:
            raise ValueError(f"unknown snapshot line kind {kind!r}")
    general: dict[str, list[Any]] = {s: [] for s in body["queues"]}
    appointments: dict[str, list[Any]] = {s: [] for s in body["queues"]}
    for t in tickets.values():
        if t.queue_key is not None:
            general[t.service_id].append(t.queue_key)
            if t.appointment_key is not None:
                appointments[t.service_id].append(t.appointment_key)
    waiting = WaitingIndex(
        {s: ServiceQueue(SortedList(general[s]), SortedList(appointments[s])) for s in general}
    )
    return BranchState(
        branch_id=body["branch_id"],
        time_zone=TimeZoneName(body["time_zone"]),
        day_starts_at_min=body["day_starts_at_min"],
        services={r[0]: ServiceConfig(r[0], r[1], r[2], r[3]) for r in body["services"]},
        counters={
            r[0]: Counter(r[0], r[1], tuple(r[2]), CounterStatus(r[3]), r[4], r[5], r[6])
            for r in body["counters"]
        },
        tickets=tickets,
        numbers=numbers,
        waiting=waiting,
        applied=body["applied"],
    )
