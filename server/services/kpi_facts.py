"""Keeping ``kpi_facts`` in line with the accepted events of a branch.

The facts are an index of the log that is brought up to date after it, not in the
transaction that accepts events: pushes and ticket actions pay nothing for reports.
``kpi_fact_marks`` holds, per branch, the ``server_seq`` the facts cover and the zone
they were bucketed in. :func:`catch_up` folds what came after the mark: the tickets
those events name are rewritten from their whole accepted history (a ticket's facts
depend only on its own events; ``queue_events.ticket_id`` is indexed), the summaries
of the days they are on are counted again (:mod:`server.services.kpi_summaries`),
the counter events are folded into ``kpi_pauses``, and the mark moves on, in the
same transaction.

Reports catch their branches up before they read, so they never lag the log; the
service also catches up every few seconds in the background
(:func:`keep_facts_current`), so a report seldom has much left to do. Catching up
holds the branch's mark row: on PostgreSQL with ``FOR UPDATE`` (the background
skips a branch someone else holds), on SQLite under the database's write lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from anyio import to_thread
from sqlalchemy import Connection, Table, bindparam, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from core.errors import MalformedEvent
from core.events import EventBase, parse_event
from core.kpi_facts import PauseFold
from core.kpi_rows import FactRow, fact_rows
from server.db import SQLiteWriteQueue, session_scope
from server.models import (
    Branch,
    BranchSequence,
    KpiFact,
    KpiFactMark,
    KpiPause,
    QueueEvent,
)
from server.services import kpi_summaries

log = logging.getLogger(__name__)
T = TypeVar("T")

FACTS = cast(Table, KpiFact.__table__)
PAUSES = cast(Table, KpiPause.__table__)
MARKS = cast(Table, KpiFactMark.__table__)
_EVENTS = cast(Table, QueueEvent.__table__).c
_SEQUENCES = cast(Table, BranchSequence.__table__)
_TICKETS_PER_ROUND = 500
# Log rows folded per transaction: a long backlog (a new installation's history)
# is caught up in steps that each commit, instead of one transaction of hours.
STEP_EVENTS = 20_000
# The background catch-up folds in short steps and, after each, waits nine times
# as long as the step took. On SQLite a step holds the one writer's turn, and its
# Python work holds the GIL the event loop needs, so it must stay short and rare:
# the ticket routes run on the event loop, and the service's p99 target is 50 ms.
# Steps of a fixed 50 rows (16 ms alone) took 30-90 ms beside a loaded event loop,
# waited out three times as long, and with a backlog after a busy minute they ran
# through a whole 20 s benchmark phase: requests waited a median 20 ms for the
# writer's turn and the p99 was 123 ms. So a step folds as many rows as should take
# BACKGROUND_STEP_S (from the last step's pace, between the two bounds below) and
# the catch-up takes at most a tenth of the time while the service is busy. On
# SQLite, where the service knows how busy its one writer is, it takes half the
# time while others held the writer's turn less than IDLE_SHARE of the time, judged
# over IDLE_WINDOW_S at least (over a few ms, a busy service often looks idle).
# Busy, small steps fold about 100 rows a second (measured beside 160 requests a
# second); idle, several hundred. What is left, a report catches up itself.
BACKGROUND_STEP_S = 0.005
BACKGROUND_MIN_STEP_EVENTS = 5
BACKGROUND_FIRST_STEP_EVENTS = 10
BACKGROUND_STEP_EVENTS = 50
BACKGROUND_PAUSE_FACTOR = 9.0
IDLE_PAUSE_FACTOR = 1.0
IDLE_SHARE = 0.1
IDLE_WINDOW_S = 0.5


@dataclass(frozen=True, slots=True)
class BranchRef:
    """What catching a branch up needs to know of it."""

    tenant_id: uuid.UUID
    branch_id: uuid.UUID
    time_zone: str


# Built once on table columns, with bind parameters.
_AFTER_MARK = (
    select(_EVENTS.server_seq, _EVENTS.ticket_id, _EVENTS.status)
    .where(
        _EVENTS.branch_id == bindparam("branch_id"),
        _EVENTS.server_seq > bindparam("after"),
    )
    .order_by(_EVENTS.server_seq)
    .limit(bindparam("step"))
)
_HISTORY = (
    select(_EVENTS.payload)
    .where(
        _EVENTS.ticket_id.in_(bindparam("ids", expanding=True)),
        _EVENTS.branch_id == bindparam("branch_id"),
        _EVENTS.status == "accepted",
        _EVENTS.server_seq <= bindparam("through"),
    )
    .order_by(_EVENTS.server_seq)
)
_DROP_TICKET_FACTS = (
    delete(FACTS)
    .where(FACTS.c.ticket_id.in_(bindparam("ids", expanding=True)))
    .returning(
        FACTS.c.local_day,
        FACTS.c.service_id,
        FACTS.c.kind,
        FACTS.c.value,
        FACTS.c.hour_start,
        FACTS.c.no_show,
    )
)
_payload = QueueEvent.payload
# The fields of the counter events the pause fold reads, taken out of the payloads
# by the database (a busy branch has thousands of them).
_COUNTER_EVENTS = (
    select(
        _EVENTS.type,
        _EVENTS.occurred_at,
        _payload["counter_id"].as_string(),
        _payload["actor_id"].as_string(),
        _payload["reason"].as_string(),
    )
    .where(
        _EVENTS.branch_id == bindparam("branch_id"),
        _EVENTS.server_seq > bindparam("after"),
        _EVENTS.server_seq <= bindparam("through"),
        _EVENTS.status == "accepted",
        _EVENTS.ticket_id.is_(None),
        _EVENTS.type.in_(("counter.paused", "counter.resumed", "counter.closed")),
    )
    .order_by(_EVENTS.server_seq)
)
_OPEN_PAUSES = (
    select(
        PAUSES.c.id, PAUSES.c.counter_id, PAUSES.c.started_at, PAUSES.c.staff_id, PAUSES.c.reason
    )
    .where(PAUSES.c.branch_id == bindparam("branch_id"), PAUSES.c.ended_at.is_(None))
    .order_by(PAUSES.c.id)
)
CounterRow = tuple[str, datetime, str | None, str | None, str | None]
_MARK = select(MARKS.c.through_seq, MARKS.c.time_zone).where(
    MARKS.c.branch_id == bindparam("branch_id")
)
_MOVE_MARK = (
    update(MARKS)
    .where(MARKS.c.branch_id == bindparam("of_branch"))
    .values(through_seq=bindparam("through"), time_zone=bindparam("zone"))
)


def catch_up(
    factory: sessionmaker[Session],
    branch: BranchRef,
    *,
    wait: bool = True,
    stop: threading.Event | None = None,
    background: bool = False,
) -> int | None:
    """Fold the branch's events after its mark into its facts; the number of log rows read.

    With ``wait=False`` a branch another process is catching up is left to it
    (answers ``None``); otherwise this waits for that one and then does the rest.
    A set ``stop`` ends it after the step under way. ``background`` takes short
    steps with pauses between them (:data:`BACKGROUND_STEP_S`).
    """
    read: int | None = None
    for read, took in _steps(factory, branch, wait=wait, background=background):  # noqa: B007
        if took is None or (stop is not None and stop.is_set()):
            break
        pause = took * BACKGROUND_PAUSE_FACTOR if background else 0.0
        if not pause:
            continue
        if stop is None:
            time.sleep(pause)
        elif stop.wait(pause):
            break
    return read


def _steps(
    factory: sessionmaker[Session], branch: BranchRef, *, wait: bool, background: bool
) -> Iterator[tuple[int | None, float | None]]:
    """Catch ``branch`` up one step (one transaction) per iteration.

    Each step yields the log rows read so far (None when another process holds
    the branch) and the seconds it took, None after the last; the caller pauses
    as it sees fit. It yields outside its transaction, so the caller may stop
    between steps. ``background`` sizes each step from the last one's pace.
    """
    size = BACKGROUND_FIRST_STEP_EVENTS if background else STEP_EVENTS
    folded = 0
    while True:
        started = time.monotonic()
        with session_scope(factory) as session:
            step = _catch_up_step(session, branch, wait=wait, size=size)
        if step is None:
            yield (None if folded == 0 else folded), None
            return
        folded += step
        if step < size:
            yield folded, None
            return
        took = time.monotonic() - started
        if background:
            size = next_background_step(size, took)
        yield folded, took


def next_background_step(size: int, took_s: float) -> int:
    """The rows the next background step folds, after ``size`` rows took ``took_s``."""
    if took_s <= 0:
        return BACKGROUND_STEP_EVENTS
    paced = int(size * BACKGROUND_STEP_S / took_s)
    return max(BACKGROUND_MIN_STEP_EVENTS, min(BACKGROUND_STEP_EVENTS, paced))


def _catch_up_step(session: Session, branch: BranchRef, *, wait: bool, size: int) -> int | None:
    mark = _hold_mark(session, branch, wait=wait)
    if mark is None:
        return None
    through, zone = mark
    if zone != branch.time_zone:  # bucketed in another zone: count them all again
        for table in (FACTS, kpi_summaries.SUMMARIES, PAUSES):
            session.execute(delete(table).where(table.c.branch_id == branch.branch_id))
        through = 0
    rows = session.execute(
        _AFTER_MARK, {"branch_id": branch.branch_id, "after": through, "step": size}
    ).all()
    if rows:
        last = int(rows[-1][0])
        tickets = sorted({t for _, t, status in rows if t is not None and status == "accepted"})
        rewrite_tickets(session, branch, tickets, through=last)
        if any(t is None for _, t, _ in rows):
            fold_counter_events(session, branch, after=through, through=last)
        through = last
    if rows or zone != branch.time_zone:
        session.execute(
            _MOVE_MARK,
            {"of_branch": branch.branch_id, "through": through, "zone": branch.time_zone},
        )
    return len(rows)


def _hold_mark(session: Session, branch: BranchRef, *, wait: bool) -> tuple[int, str] | None:
    """Lock the branch's mark row (made at 0 when missing) and read it."""
    values = {"branch_id": branch.branch_id, "through_seq": 0, "time_zone": branch.time_zone}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            postgresql.insert(MARKS).values(values).on_conflict_do_nothing(),
        )
        query = _MARK.with_for_update(skip_locked=not wait)
    else:  # SQLite: this transaction already holds the database's write lock
        session.execute(sqlite.insert(MARKS).values(values).on_conflict_do_nothing())
        query = _MARK
    row = session.execute(query, {"branch_id": branch.branch_id}).first()
    return None if row is None else (int(row[0]), str(row[1]))


def rewrite_tickets(
    session: Session | Connection,
    branch: BranchRef,
    tickets: Sequence[uuid.UUID],
    *,
    through: int,
) -> None:
    """Replace the facts of ``tickets`` by those of their accepted events up to ``through``,
    and change the day summaries by what was removed and added."""
    removed: list[Sequence[Any]] = []
    added: list[Sequence[Any]] = []
    for start in range(0, len(tickets), _TICKETS_PER_ROUND):
        chunk = list(tickets[start : start + _TICKETS_PER_ROUND])
        params = {"ids": chunk, "branch_id": branch.branch_id, "through": through}
        history = list(_parsed(p for (p,) in session.execute(_HISTORY, params)))
        removed += session.execute(_DROP_TICKET_FACTS, {"ids": chunk}).all()
        rows = fact_rows(history, branch.time_zone)
        added += [
            (r.local_day, r.service_id, r.kind, r.value, r.hour_start, r.no_show) for r in rows
        ]
        insert_facts(session, branch.tenant_id, branch.branch_id, rows)
    kpi_summaries.apply_changes(session, branch.tenant_id, branch.branch_id, removed, added)


def write_facts(
    session: Session | Connection, tenant_id: uuid.UUID, branch_id: uuid.UUID, rows: list[FactRow]
) -> None:
    """Add the fact rows of new tickets, and count their days' summaries again."""
    insert_facts(session, tenant_id, branch_id, rows)
    kpi_summaries.refresh_days(session, tenant_id, branch_id, {r.local_day for r in rows})


def fold_counter_events(
    session: Session | Connection, branch: BranchRef, *, after: int, through: int
) -> None:
    """Fold the branch's counter events logged after ``after`` up to ``through``."""
    params = {"branch_id": branch.branch_id, "after": after, "through": through}
    fold_pauses(session, branch, session.execute(_COUNTER_EVENTS, params))


def fold_pauses(
    session: Session | Connection, branch: BranchRef, rows: Iterable[CounterRow]
) -> None:
    """Fold counter events (type, at, counter, actor, reason), in log order, into
    ``kpi_pauses``, carrying on the pauses still open from the last fold.

    A row without a counter, or a pause without a reason, is malformed and skipped,
    as parsing the event would skip it.
    """
    fold = PauseFold()
    was_open = session.execute(_OPEN_PAUSES, {"branch_id": branch.branch_id}).all()
    for _, counter_id, at, staff_id, reason in was_open:
        fold.paused(counter_id, at, staff_id, reason)
    for kind, at, counter_id, actor_id, reason in rows:
        if counter_id is None:
            continue
        if kind == "counter.paused":
            if reason is not None:
                fold.paused(counter_id, at, actor_id, reason)
        else:
            fold.ended(counter_id, at)
    if was_open:
        ids = [row[0] for row in was_open]
        session.execute(delete(PAUSES).where(PAUSES.c.id.in_(ids)))
    zone = ZoneInfo(branch.time_zone)
    found: list[tuple[str, datetime, str | None, str, datetime | None, float | None]] = [
        (p.counter_id, p.started_at, p.staff_id, p.reason, p.ended_at, p.seconds)
        for p in fold.result()
    ]
    found += [(*p, None, None) for p in fold.still_open()]
    if found:
        session.execute(
            insert(PAUSES),
            [
                {
                    "tenant_id": branch.tenant_id,
                    "branch_id": branch.branch_id,
                    "counter_id": counter_id,
                    "staff_id": staff_id,
                    "reason": reason,
                    "started_at": at,
                    "ended_at": ended_at,
                    "seconds": seconds,
                    "local_day": at.astimezone(zone).date(),
                }
                for counter_id, at, staff_id, reason, ended_at, seconds in found
            ],
        )


def _parsed(payloads: Iterable[Any]) -> Iterable[EventBase]:
    for payload in payloads:
        try:
            yield parse_event(payload)
        except MalformedEvent:  # stored by hand or by a bug: nothing to count
            log.warning("kpi facts: skipped an event that does not parse")


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


def stale_branches(session: Session, tenant_id: uuid.UUID | None = None) -> list[BranchRef]:
    """Branches whose facts are behind their log, or were bucketed in another zone."""
    seq = _SEQUENCES.c
    query = (
        select(Branch.tenant_id, Branch.id, Branch.time_zone)
        .join(_SEQUENCES, seq.branch_id == Branch.id)
        .outerjoin(MARKS, MARKS.c.branch_id == Branch.id)
        .where(
            or_(
                MARKS.c.through_seq.is_(None),
                MARKS.c.through_seq < seq.last_server_seq,
                MARKS.c.time_zone != Branch.time_zone,
            )
        )
        .order_by(Branch.id)
    )
    if tenant_id is not None:
        query = query.where(Branch.tenant_id == tenant_id)
    return [BranchRef(t, b, z) for t, b, z in session.execute(query)]


def catch_up_behind(
    factory: sessionmaker[Session], tenant_id: uuid.UUID, branch_ids: Iterable[uuid.UUID]
) -> int:
    """Catch up those of ``branch_ids`` (of ``tenant_id``) that are behind; the rows read.

    One query finds them, so a report over many current branches pays one read, not
    a transaction per branch. Events committed after that query are the report's
    concurrent writes: they are in the next one.
    """
    wanted = set(branch_ids)
    with session_scope(factory) as session:
        behind = [b for b in stale_branches(session, tenant_id) if b.branch_id in wanted]
    return sum(catch_up(factory, branch) or 0 for branch in behind)


def catch_up_stale(factory: sessionmaker[Session], stop: threading.Event | None = None) -> int:
    """Catch up every stale branch that nobody else is catching up; the rows read."""
    with session_scope(factory) as session:
        branches = stale_branches(session)
    folded = 0
    for branch in branches:
        if stop is not None and stop.is_set():
            break
        folded += catch_up(factory, branch, wait=False, stop=stop, background=True) or 0
    return folded


async def catch_up_stale_in_loop(
    factory: sessionmaker[Session], queue: SQLiteWriteQueue, stop: threading.Event
) -> int:
    """:func:`catch_up_stale` on SQLite, each step a turn of the event loop; the rows read.

    The ticket routes run in the event loop on SQLite (``run_as``), and a step is
    a unit of work like theirs: it waits in the writer's line without blocking
    the loop, and then runs at once. In a worker thread it would hold the
    writer's turn while waiting for the GIL the loop holds, and the requests in
    line behind it waited that out too (steps of 5 rows took 5-40 ms so).
    """

    own = 0.0  # how long this catch-up held the turn

    async def in_turn(run: Callable[[], T]) -> T:
        nonlocal own
        await queue.wait_turn()
        started = time.monotonic()
        try:
            return run()
        finally:
            queue.end_turn()
            own += time.monotonic() - started

    def stale() -> list[BranchRef]:
        with session_scope(factory) as session:
            return stale_branches(session)

    idle = False  # until a window has been watched
    window = (time.monotonic(), queue.busy_seconds(), own)

    def watch() -> None:
        nonlocal idle, window
        now, held = time.monotonic(), queue.busy_seconds()
        since, held_then, own_then = window
        if now - since >= IDLE_WINDOW_S:
            others = (held - held_then) - (own - own_then)
            idle = others < IDLE_SHARE * (now - since)
            window = (now, held, own)

    folded = 0
    for branch in await in_turn(stale):
        steps = _steps(factory, branch, wait=False, background=True)
        read: int | None = None
        while not stop.is_set():
            read, took = await in_turn(lambda: next(steps))  # noqa: B023 - used at once
            if took is None:
                break
            watch()
            await asyncio.sleep(took * (IDLE_PAUSE_FACTOR if idle else BACKGROUND_PAUSE_FACTOR))
        folded += read or 0
        if stop.is_set():
            break
    return folded


async def keep_facts_current(
    factory: sessionmaker[Session],
    interval_s: float,
    stop: threading.Event,
    queue: SQLiteWriteQueue | None = None,
) -> None:
    """Every ``interval_s``, catch up the stale branches, until ``stop``.

    With an SQLite file's write ``queue`` the rounds run in the event loop
    (:func:`catch_up_stale_in_loop`); otherwise in a worker thread. The owner
    sets ``stop`` before cancelling the task: a round under way then ends
    after the step it is on instead of finishing the whole list, and the task ends
    only once it has. (Cancelling a task does not stop its worker thread: left
    running, the round would hold a connection past the engine's disposal.)
    """
    while not stop.is_set():
        await asyncio.sleep(interval_s)
        if stop.is_set():
            return
        if queue is not None:
            try:
                await catch_up_stale_in_loop(factory, queue, stop)
            except Exception:  # a report still catches its branches up itself
                log.exception("kpi facts: background catch-up failed; retrying later")
            continue
        round_ = asyncio.ensure_future(to_thread.run_sync(catch_up_stale, factory, stop))
        try:
            await asyncio.shield(round_)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await round_
            raise
        except Exception:  # a report still catches its branches up itself
            log.exception("kpi facts: background catch-up failed; retrying later")
