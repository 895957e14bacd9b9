"""Keeping the cache's KPI fact rows in line with the live state.

A ticket's facts (:func:`core.kpi_rows.fact_rows`) depend only on its own events,
so every write rewrites the rows of the tickets it touched from their live history:
the confirmed events (``events.ticket_id`` is indexed) then the outbox entries that
still apply. Rows are bucketed in the branch's zone; when the zone the rows were
written in (``kpi_meta``) is not the live one (new file, new reference data), every
row is rebuilt. Runs inside the cache's write transaction, like the projection.

``kpi_hours`` keeps the counts of the facts per hour, service, counter and staff
member, with exact sums of the waits and service times (:mod:`sync.client.exact_sum`);
``kpi_branch_hours`` the same per hour alone. Each rewrite subtracts the counts of
the rows it deletes and adds those of the rows it writes, so report counts read a
few thousand rows instead of every fact. The SLA counts depend on the services'
targets, kept with them in ``kpi_meta``; other targets (or the zone) mean counting
them again from the facts.

A write that touches many tickets (a pulled page of a first sync or a long outage)
does not rewrite their facts there and then: :func:`keep_facts` lists them in
``kpi_dirty``, in the same transaction, and :func:`flush_facts` writes them later,
a chunk at a time, when the sync engine is idle or before a report reads them. So a
console is up to date with the queue first and with its reports a moment later, and
a crash in between loses nothing: the list is in the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, delete, func, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.events import EventBase, parse_event
from core.kpi_rows import FactRow, fact_rows
from sync.client import exact_sum
from sync.client.replica import OutboxEntry, ticket_of
from sync.client.store import (
    HOUR_COUNTS,
    driver,
    events,
    kpi_branch_hours,
    kpi_dirty,
    kpi_facts,
    kpi_hours,
    kpi_meta,
)

Targets = Mapping[str, int | None]
T = TypeVar("T")
# The fact columns the hourly counts are taken from, in this order.
_COUNTED = (
    "kind",
    "service_id",
    "counter_id",
    "staff_id",
    "local_day",
    "hour_start",
    "value",
    "no_show",
)
_HourKey = tuple[int, str, str, str, str]  # hour_start, service, counter, staff, local_day


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


DEFER_OVER = 64
"""Tickets touched by one write above which their facts are left to :func:`flush_facts`."""


def keep_facts(
    conn: Connection,
    time_zone: str,
    tail: Sequence[OutboxEntry],
    ticket_ids: set[str],
    targets: Targets,
) -> None:
    """After a write touching ``ticket_ids``: their facts now, or listed for later if many."""
    if len(ticket_ids) <= DEFER_OVER:
        write_facts(conn, time_zone, tail, ticket_ids, targets)
        return
    list_for_later(conn, ticket_ids)


_LIST = "INSERT OR IGNORE INTO kpi_dirty (ticket_id) VALUES (?)"


def list_for_later(conn: Connection, ticket_ids: Iterable[str]) -> None:
    """List tickets in ``kpi_dirty`` for :func:`flush_facts` (a first sync lists thousands)."""
    driver(conn).executemany(_LIST, [(t,) for t in sorted(ticket_ids)])


def has_deferred(conn: Connection) -> bool:
    """Whether some tickets' facts are still to be written."""
    return conn.execute(select(kpi_dirty.c.ticket_id).limit(1)).first() is not None


def flush_facts(
    conn: Connection,
    time_zone: str,
    tail: Sequence[OutboxEntry],
    targets: Targets,
    limit: int | None = None,
) -> int:
    """Write the facts of (at most ``limit``) listed tickets; how many are left listed."""
    query = select(kpi_dirty.c.ticket_id).order_by(kpi_dirty.c.ticket_id)
    if limit is not None:
        query = query.limit(limit)
    ids = list(conn.execute(query).scalars())
    write_facts(conn, time_zone, tail, ids, targets)
    for chunk in _chunks(ids, 500):
        conn.execute(delete(kpi_dirty).where(kpi_dirty.c.ticket_id.in_(chunk)))
    if limit is None or len(ids) < limit:
        return 0
    return int(conn.execute(select(func.count()).select_from(kpi_dirty)).scalar_one())


def write_facts(
    conn: Connection,
    time_zone: str,
    tail: Sequence[OutboxEntry],
    ticket_ids: Iterable[str],
    targets: Targets,
) -> None:
    """Rewrite the facts of ``ticket_ids``.

    Facts bucketed in another zone (or none yet: a new file) are dropped first and
    every ticket is listed for :func:`flush_facts`.
    """
    meta = conn.execute(select(kpi_meta.c.time_zone, kpi_meta.c.targets)).first()
    if meta is None or meta.time_zone != time_zone:
        _start_over(conn, time_zone, tail, targets)
    elif meta.targets != targets_key(targets):
        rebuild_hours(conn, targets)
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
    counts: dict[_HourKey, list[int]] = {}
    columns = [kpi_facts.c[name] for name in _COUNTED]
    for chunk in _chunks(ids, 500):
        old = conn.execute(select(*columns).where(kpi_facts.c.ticket_id.in_(chunk)))
        _count(counts, old, targets, -1)
        conn.execute(delete(kpi_facts).where(kpi_facts.c.ticket_id.in_(chunk)))
    rows = fact_rows(history, time_zone)
    _insert(conn, rows)
    _count(counts, (_counted(r) for r in rows), targets, 1)
    _add_hours(conn, counts)


def _start_over(
    conn: Connection, time_zone: str, tail: Sequence[OutboxEntry], targets: Targets
) -> None:
    """No facts, no counts, and every ticket listed for :func:`flush_facts` (a new zone)."""
    conn.execute(delete(kpi_facts))
    conn.execute(delete(kpi_dirty))
    confirmed = select(events.c.ticket_id).where(events.c.ticket_id.is_not(None)).distinct()
    conn.execute(insert(kpi_dirty).from_select(["ticket_id"], confirmed))
    pending = sorted({t for e in tail if e.applies and (t := ticket_of(e.event)) is not None})
    if pending:
        listed = sqlite_insert(kpi_dirty).on_conflict_do_nothing()
        conn.execute(listed, [{"ticket_id": t} for t in pending])
    conn.execute(delete(kpi_meta))
    conn.execute(insert(kpi_meta).values(id=1, time_zone=time_zone))
    _write_hours(conn, (), targets)


def rebuild_facts(
    conn: Connection, time_zone: str, tail: Sequence[OutboxEntry], targets: Targets
) -> None:
    """Every fact row again, from the confirmed log and the applying tail."""
    conn.execute(delete(kpi_facts))
    conn.execute(delete(kpi_dirty))
    query = (
        select(events.c.body).where(events.c.ticket_id.is_not(None)).order_by(events.c.server_seq)
    )
    history = [parse_event(body) for (body,) in conn.execute(query)]
    history.extend(e.event for e in tail if e.applies and ticket_of(e.event) is not None)
    rows = fact_rows(history, time_zone)
    _insert(conn, rows)
    conn.execute(delete(kpi_meta))
    conn.execute(insert(kpi_meta).values(id=1, time_zone=time_zone))
    _write_hours(conn, (_counted(r) for r in rows), targets)


def rebuild_hours(conn: Connection, targets: Targets) -> None:
    """``kpi_hours`` counted again from every stored fact (the targets changed)."""
    columns = [kpi_facts.c[name] for name in _COUNTED]
    _write_hours(conn, conn.execute(select(*columns)), targets)


def hour_counts(rows: Iterable[Sequence[Any]], targets: Targets) -> dict[_HourKey, list[int]]:
    """The ``kpi_hours`` counts of fact rows given as :data:`_COUNTED` columns."""
    counts: dict[_HourKey, list[int]] = {}
    _count(counts, rows, targets, 1)
    return {k: v for k, v in counts.items() if v[0]}


def targets_key(targets: Targets) -> str:
    """The targets as ``kpi_meta.targets`` keeps them (only the services with one)."""
    return json.dumps(sorted((s, t) for s, t in targets.items() if t is not None))


def _write_hours(conn: Connection, rows: Iterable[Sequence[Any]], targets: Targets) -> None:
    conn.execute(delete(kpi_hours))
    conn.execute(delete(kpi_branch_hours))
    found = hour_counts(rows, targets)
    if found:
        conn.execute(insert(kpi_hours), [_hour_dict(k, v) for k, v in found.items()])
        branch = branch_hour_counts(found)
        conn.execute(insert(kpi_branch_hours), [_branch_dict(k, v) for k, v in branch.items()])
    conn.execute(update(kpi_meta).values(targets=targets_key(targets)))


def branch_hour_counts(counts: Mapping[_HourKey, list[int]]) -> dict[tuple[int, str], list[int]]:
    """The ``kpi_branch_hours`` counts (hour_start, local_day) of ``kpi_hours`` counts."""
    branch: dict[tuple[int, str], list[int]] = {}
    for (hour, _, _, _, day), values in counts.items():
        found = branch.get((hour, day))
        if found is None:
            branch[hour, day] = list(values)
        else:
            for i, v in enumerate(values):
                found[i] += v
    return branch


def _count(
    counts: dict[_HourKey, list[int]],
    rows: Iterable[Sequence[Any]],
    targets: Targets,
    sign: int,
) -> None:
    """Add ``sign`` times the counts of ``rows`` to ``counts``.

    The same rules as the fact aggregate of :mod:`sync.client.reports`: a segment
    with a value was called; it is SLA-eligible when its service has a target.
    """
    for kind, service, counter, staff, day, hour, value, no_show in rows:
        key = (hour, service or "", counter or "", staff or "", day)
        found = counts.get(key)
        if found is None:
            found = counts[key] = [0] * len(HOUR_COUNTS)
        found[0] += sign
        if kind == "segment":
            if no_show:
                found[4] += sign
            if value is not None:
                found[2] += sign
                target = targets.get(service) if service is not None else None
                if target is not None:
                    found[9] += sign
                    if value <= target:
                        found[10] += sign
                _add_value(found, _WAIT_LIMB, value, sign)
        else:
            found[_KIND_COUNT[kind]] += sign
            if kind == "completion" and value is not None:
                found[11] += sign
                _add_value(found, _SERVICE_LIMB, value, sign)


_WAIT_LIMB = HOUR_COUNTS.index("wait_l0")
_SERVICE_LIMB = HOUR_COUNTS.index("service_l0")
_INEXACT = HOUR_COUNTS.index("inexact")


def _add_value(found: list[int], first: int, value: float, sign: int) -> None:
    parts = exact_sum.limbs(value)
    if parts is None:
        found[_INEXACT] += sign
        return
    for k, part in enumerate(parts):
        found[first + k] += sign * part


_KIND_COUNT = {
    "issued": 1,
    "completion": 3,
    "cancelled": 5,
    "abandoned": 6,
    "transfer": 7,
    "recall": 8,
}


def _add_hours(conn: Connection, counts: dict[_HourKey, list[int]]) -> None:
    changed = {k: v for k, v in counts.items() if any(v)}
    if not changed:
        return
    _upsert(conn, kpi_hours, [_hour_dict(k, v) for k, v in changed.items()])
    branch = branch_hour_counts(changed)
    _upsert(conn, kpi_branch_hours, [_branch_dict(k, v) for k, v in branch.items()])
    hours = sorted({hour for hour, _ in branch})
    for chunk in _chunks(hours, 500):
        for table in (kpi_hours, kpi_branch_hours):
            conn.execute(delete(table).where(table.c.hour_start.in_(chunk), table.c.facts <= 0))


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Add the counts of ``rows`` to those of the rows with their keys (or insert them)."""
    upsert = sqlite_insert(table)
    upsert = upsert.on_conflict_do_update(
        index_elements=list(table.primary_key),
        set_={name: table.c[name] + upsert.excluded[name] for name in HOUR_COUNTS},
    )
    conn.execute(upsert, rows)


def _branch_dict(key: tuple[int, str], counts: list[int]) -> dict[str, Any]:
    found: dict[str, Any] = dict(zip(HOUR_COUNTS, counts, strict=True))
    found.update(hour_start=key[0], local_day=key[1])
    return found


def _hour_dict(key: _HourKey, counts: list[int]) -> dict[str, Any]:
    hour, service, counter, staff, day = key
    found: dict[str, Any] = dict(zip(HOUR_COUNTS, counts, strict=True))
    found.update(
        hour_start=hour, service_id=service, counter_id=counter, staff_id=staff, local_day=day
    )
    return found


def _counted(row: FactRow) -> tuple[Any, ...]:
    return (
        row.kind,
        row.service_id,
        row.counter_id,
        row.staff_id,
        row.local_day.isoformat(),
        row.hour_start,
        row.value,
        int(row.no_show),
    )


def counter_events(conn: Connection, tail: Sequence[OutboxEntry]) -> list[EventBase]:
    """The live counter events (pauses are folded from them at query time), in order."""
    query = select(events.c.body).where(events.c.ticket_id.is_(None)).order_by(events.c.server_seq)
    found = [parse_event(body) for (body,) in conn.execute(query)]
    found.extend(e.event for e in tail if e.applies and ticket_of(e.event) is None)
    return found


def _insert(conn: Connection, rows: list[FactRow]) -> None:
    if rows:
        conn.execute(insert(kpi_facts), [fact_row_dict(r) for r in rows])


def _chunks(values: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
