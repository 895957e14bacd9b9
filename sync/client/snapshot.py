"""The confirmed branch state saved in the cache file, so opening it need not replay the log.

Opening a cache used to fold the whole confirmed log (``events``) into memory: a
console with months of history waited seconds for its window. The ``snapshot``
row (:data:`sync.client.store.snapshot`) holds ``base`` (see
:mod:`sync.client.replica`) as of the last confirmed event it covers; an open
folds only the events after it.

A snapshot is trusted only if it is exactly what a replay would give:

- it is written in the same transaction as the events it covers, and names the
  last one (``server_seq``, event id) and how many rows the log then held, so a
  log that lost or changed rows (a file restored from a copy, edited by hand) no
  longer matches it;
- it names the reference data version it was folded with (folding reads service
  codes and which services and counters exist), and :func:`fingerprint` of the
  code that folds and encodes (a build whose fold or state differs ignores it);
- a CRC of the body catches a damaged page.

Anything that does not match means a replay, as before; the cache then compares
the projection with the result as always, and rewrites the snapshot.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from sortedcontainers import SortedList
from sqlalchemy import Connection, delete, func, insert, select

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
from sync.client.replica import STATE_FIELDS
from sync.client.store import events, snapshot

log = logging.getLogger(__name__)

FORMAT = 3  # bump when the body's layout changes
# Rows per line of the body: one JSON parse per line costs more than parsing the row
# itself, and a bounded line keeps the parsed rows of 100,000 tickets out of memory.
ROWS_PER_LINE = 500

# The fields this codec writes, in order; core growing or losing one disables snapshots
# (see fingerprint) until this module learns it, rather than dropping it silently.
_SERVICE_FIELDS = ("id", "code", "name", "target_wait_s")
_COUNTER_FIELDS = (
    "id",
    "name",
    "work_profile",
    "status",
    "pause_reason",
    "current_ticket_id",
    "staff_id",
)
_TICKET_FIELDS = (
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
# Whose code decides what a folded state looks like: a change to any of them may
# change the state a replay gives, so a snapshot of another build is not used.
_FOLD_MODULES = (
    "core.events",
    "core.machine",
    "core.ordering",
    "core.rules",
    "core.state",
    "core.values",
    "sync.client.replica",
    __name__,
)


@cache
@functools.cache  # the code and shapes it hashes do not change while the process runs
def fingerprint() -> str | None:
    """What a snapshot must have been written by to be used; None: never use one.

    The source of the modules that fold and encode, and the shape of the state.
    None when core's state has fields this codec does not know, or when the
    source is not available (a frozen build without sources): replaying is slow
    but never wrong.
    """
    shapes = (
        (BranchState, STATE_FIELDS),
        (ServiceConfig, _SERVICE_FIELDS),
        (Counter, _COUNTER_FIELDS),
        (Ticket, _TICKET_FIELDS),
    )
    for cls, names in shapes:
        if tuple(f.name for f in dataclasses.fields(cls)) != names:
            log.warning("%s has changed shape: cache snapshots are not used", cls.__name__)
            return None
    digest = hashlib.sha256(f"{FORMAT}:{sorted(Customer.model_fields)}".encode())
    for name in _FOLD_MODULES:
        loader = getattr(importlib.import_module(name).__spec__, "loader", None)
        try:
            source = loader.get_source(name) if loader is not None else None
        except (ImportError, OSError):
            source = None
        if source is None:
            return None
        digest.update(name.encode() + b"\0" + source.encode())
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Position:
    """How far into the confirmed log a snapshot reaches."""

    server_seq: int  # the last event it covers (0: none)
    event_id: str | None  # that event's id
    count: int  # rows of the log up to and including it


def log_position(conn: Connection) -> Position:
    """The position of the whole confirmed log as ``conn`` sees it."""
    count, last = conn.execute(select(func.count(), func.max(events.c.server_seq))).one()
    if not last:
        return Position(0, None, 0)
    event_id = conn.execute(select(events.c.event_id).where(events.c.server_seq == last)).scalar()
    return Position(int(last), event_id, int(count))


def _covers(conn: Connection, at: Position) -> bool:
    """Whether the log's rows up to ``at.server_seq`` are the ones the snapshot folded."""
    upto = select(func.count()).where(events.c.server_seq <= at.server_seq)
    if conn.execute(upto).scalar_one() != at.count:
        return False
    if at.server_seq == 0:
        return True
    query = select(events.c.event_id).where(events.c.server_seq == at.server_seq)
    return bool(conn.execute(query).scalar() == at.event_id)


@dataclass(frozen=True, slots=True)
class Loaded:
    state: BranchState
    position: Position
    skipped: int  # confirmed events that did not fold (see Replica.confirm)


def load(conn: Connection, branch_id: str, reference_version: str | None) -> Loaded | None:
    """The stored snapshot if it is usable as it stands, else None (replay instead)."""
    expected = fingerprint()
    if expected is None:
        return None
    row = conn.execute(select(snapshot)).first()
    if row is None:
        return None
    position = Position(row.server_seq, row.event_id, row.events)
    problem = None
    if row.format != FORMAT or row.fingerprint != expected:
        problem = "written by another build"
    elif row.reference_version != reference_version:
        problem = "folded with other reference data"
    elif zlib.crc32(row.body.encode()) != row.crc:
        problem = "damaged"
    elif not _covers(conn, position):
        problem = "not matching the log"
    if problem is None:
        try:
            state = decode(row.body)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            problem = f"unreadable ({exc})"
        else:
            if state.branch_id == branch_id:
                return Loaded(state, position, row.skipped)
            problem = "of another branch"
    log.info("cache snapshot not used: %s; replaying the log", problem)
    return None


def save(
    conn: Connection,
    state: BranchState,
    skipped: int,
    reference_version: str | None,
) -> Position | None:
    """Store ``state`` as the fold of the whole log ``conn`` holds; returns its position.

    The caller guarantees that ``state`` is exactly that fold (and that no events
    are written after it in this transaction). Returns None, storing nothing, when
    this build does not use snapshots.
    """
    stamp = fingerprint()
    conn.execute(delete(snapshot))
    if stamp is None:
        return None
    body = encode(state)
    at = log_position(conn)
    conn.execute(
        insert(snapshot).values(
            id=1,
            format=FORMAT,
            fingerprint=stamp,
            reference_version=reference_version,
            server_seq=at.server_seq,
            event_id=at.event_id,
            events=at.count,
            skipped=skipped,
            crc=zlib.crc32(body.encode()),
            body=body,
        )
    )
    return at


def discard(conn: Connection) -> None:
    conn.execute(delete(snapshot))


# -- the body ------------------------------------------------------------------------------


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
