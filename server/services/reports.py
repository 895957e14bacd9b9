"""KPI reports from ``kpi_facts``: SQL aggregates per branch and report key.

Counts, SLA and completions per hour are aggregated in the database; waits and
service times become :class:`core.kpi.Distribution` values (nearest rank, exact
mean), as the reference computes them. On PostgreSQL, where a tenant's year is
millions of rows, one scan does it all: the rows grouped by branch, key, kind and
service, each group's values and completion hours as binary arrays, added up here
(no target looked up per row, no Python row per value). On SQLite (a branch's
worth) the counts are one query, the values are read in order and the hours
counted apart. Days and hours were bucketed in each branch's zone when the rows
were written. Pauses are folded from the branches' counter events. For one branch
the result equals :func:`core.kpi_rows.reference` over its accepted events.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from functools import lru_cache
from itertools import groupby
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import ColumnElement, Integer, and_, case, func, literal_column, null, select, text
from sqlalchemy import cast as cast_
from sqlalchemy.orm import Session

from core.kpi import GroupBy, KpiReport
from core.kpi_facts import Pause, PauseFold
from core.kpi_rows import (
    ALL,
    Counts,
    Filters,
    GroupKey,
    GroupParts,
    assemble,
    hour_key,
    pause_groups,
)
from server.models import KpiFact, QueueEvent

f = KpiFact.__table__.c
BranchReports = dict[uuid.UUID, dict[GroupKey, KpiReport]]


def kpi_reports(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    zones: Mapping[uuid.UUID, str],
    targets: Mapping[str, int | None],
    key: GroupBy | None = None,
    filters: Filters | None = None,
) -> BranchReports:
    """KPIs per branch of ``zones`` (branch id -> IANA zone), per ``key`` within each.

    Without a key every branch has its single group ``ALL``, even when empty.
    """
    filters = filters or Filters()
    group = _key_column(key)
    where = _where(tenant_id, list(zones), filters, group)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_REPORT_SETTINGS)
        found = _postgres_parts(session, targets, key, group, where)
    else:
        found = _sqlite_parts(session, targets, key, group, where)
    parts: dict[uuid.UUID, dict[GroupKey, GroupParts]] = {b: {} for b in zones}
    for (branch, k), (part, served) in found.items():
        zone = zones[branch]
        if served:
            part.served_by_hour = {_hour_key(int(h), zone): n for h, n in served.items()}
        parts[branch][_key(k, key, zone)] = part
    for branch, rows in _counter_events(session, tenant_id, list(zones)).items():
        folded = _pauses(rows)
        grouped = pause_groups(folded, key=key, filters=filters, time_zone=zones[branch])
        for k, kept in grouped.items():
            parts[branch].setdefault(k, GroupParts(Counts())).pauses = kept
    result: BranchReports = {}
    for branch, groups in parts.items():
        if key is None:
            groups.setdefault(ALL, GroupParts(Counts()))
        result[branch] = {k: assemble(groups[k]) for k in sorted(groups)}
    return result


# For this transaction: no JIT (compiling these aggregates costs seconds and saves
# less), and room to hash the groups (the planner guesses far more of them than a
# tenant has, and would otherwise sort every row to group them), unless the server
# already gives more.
_REPORT_SETTINGS = text(
    "SELECT set_config('jit', 'off', true),"
    " CASE WHEN pg_size_bytes(current_setting('work_mem')) < 64 * 1024 * 1024"
    " THEN set_config('work_mem', '64MB', true) END"
)
# Per (branch, raw key): the group's parts, and its completions per stored hour_start.
RawParts = dict[tuple[uuid.UUID, Any], tuple[GroupParts, dict[int, int]]]
_hour_key = lru_cache(maxsize=1 << 16)(hour_key)  # a report names each hour many times
# Where each kind of fact is counted in Counts (segments and completions apart).
_TALLIES = {"issued": 0, "cancelled": 4, "abandoned": 5, "transfer": 6, "recall": 7}
_CALLED, _SERVED, _NO_SHOW, _SLA_ELIGIBLE, _SLA_MET = 1, 2, 3, 8, 9


def _postgres_parts(
    session: Session,
    targets: Mapping[str, int | None],
    key: GroupBy | None,
    group: ColumnElement[Any],
    where: ColumnElement[bool],
) -> RawParts:
    """Everything in one scan, grouped by branch, key, kind and service.

    Each group's waits or service times, and the hours of its completions, come back
    as arrays, read in binary through the driver's cursor (millions of values for a
    tenant, without a SQLAlchemy row or a text number to parse for each). The SLA
    is counted here per service, which spares the database a target per row.
    """
    by = [] if key is None else [group]  # PostgreSQL refuses to group by a constant
    valued = and_(f.kind.in_(("segment", "completion")), f.value.is_not(None))
    query = (
        select(
            f.branch_id,
            group,
            f.kind,
            f.service_id,
            func.count(),
            func.count(f.value),
            func.count().filter(f.no_show == 1),
            func.array_agg(f.value).filter(valued),
            func.array_agg(f.hour_start).filter(f.kind == "completion"),
        )
        .where(where)
        .group_by(f.branch_id, *by, f.kind, f.service_id)
    )
    compiled = query.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    connection = session.connection().connection.dbapi_connection
    assert connection is not None  # the session's connection is checked out
    cursor = connection.cursor(binary=True)  # type: ignore[call-arg]
    try:
        cursor.execute(str(compiled), compiled.params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    counts: dict[tuple[uuid.UUID, Any], list[int]] = {}
    found: RawParts = {}
    for branch, k, kind, service, n, n_valued, n_no_show, values, hours in rows:
        if (branch, k) not in found:
            found[branch, k] = (GroupParts(Counts(), waits=[], service_times=[]), {})
            counts[branch, k] = [0] * 10
        part, served = found[branch, k]
        numbers = counts[branch, k]
        if kind == "segment":
            numbers[_CALLED] += n_valued
            numbers[_NO_SHOW] += n_no_show
            if values:
                cast(list[float], part.waits).extend(values)
                target = targets.get(service)
                if target is not None:
                    numbers[_SLA_ELIGIBLE] += len(values)
                    numbers[_SLA_MET] += sum(1 for v in values if v <= target)
        elif kind == "completion":
            numbers[_SERVED] += n
            if values:
                cast(list[float], part.service_times).extend(values)
            for hour, m in Counter(hours).items():
                served[hour] = served.get(hour, 0) + m
        elif kind in _TALLIES:
            numbers[_TALLIES[kind]] += n
    for at, (part, _) in found.items():
        part.counts = Counts(*counts[at])
    return found


def _sqlite_parts(
    session: Session,
    targets: Mapping[str, int | None],
    key: GroupBy | None,
    group: ColumnElement[Any],
    where: ColumnElement[bool],
) -> RawParts:
    """Counts grouped in SQL, then each group's values in order, then its hours."""
    by = [] if key is None else [group]
    target = _target(targets)
    called = f.value.is_not(None)
    segment = f.kind == "segment"

    def count(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    counts_query = (
        select(
            f.branch_id,
            group.label("k"),
            count(f.kind == "issued"),
            count(and_(segment, called)),
            count(f.kind == "completion"),
            count(and_(segment, f.no_show == 1)),
            count(f.kind == "cancelled"),
            count(f.kind == "abandoned"),
            count(f.kind == "transfer"),
            count(f.kind == "recall"),
            count(and_(segment, called, target.is_not(None))),
            count(and_(segment, called, f.value <= target)),
        )
        .where(where)
        .group_by(f.branch_id, *by)
    )
    found: RawParts = {}
    for branch, k, *numbers in session.execute(counts_query):
        found[branch, k] = (GroupParts(Counts(*map(int, numbers))), {})

    for kind, attr in (("segment", "waits"), ("completion", "service_times")):
        values_query = (
            select(f.branch_id, group, f.value)
            .where(where, f.kind == kind, f.value.is_not(None))
            .order_by(f.branch_id, *by, f.value)
        )
        rows = session.execute(values_query)
        for (branch, k), in_group in groupby(rows, key=lambda r: (r[0], r[1])):
            setattr(found[branch, k][0], attr, [r[2] for r in in_group])

    hours_query = (
        select(f.branch_id, group, f.hour_start, func.count())
        .where(where, f.kind == "completion")
        .group_by(f.branch_id, *by, f.hour_start)
    )
    for branch, k, hour, served in session.execute(hours_query):
        found[branch, k][1][hour] = served
    return found


CounterRow = tuple[str, datetime, str, str | None, str | None]


def _counter_events(
    session: Session, tenant_id: uuid.UUID, branch_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[CounterRow]]:
    """Each branch's pause, resume and close events, in order, as (type, at, counter,
    actor, reason).

    Only the fields the pause fold reads, taken out of the payloads by the database:
    a tenant's year has hundreds of thousands of these events.
    """
    payload = QueueEvent.payload
    query = (
        select(
            QueueEvent.branch_id,
            QueueEvent.type,
            QueueEvent.occurred_at,
            payload["counter_id"].as_string(),
            payload["actor_id"].as_string(),
            payload["reason"].as_string(),
        )
        .where(
            QueueEvent.tenant_id == tenant_id,
            QueueEvent.branch_id.in_(branch_ids),
            QueueEvent.status == "accepted",
            QueueEvent.ticket_id.is_(None),
            QueueEvent.type.in_(("counter.paused", "counter.resumed", "counter.closed")),
        )
        .order_by(QueueEvent.branch_id, QueueEvent.server_seq)
    )
    rows = session.connection().execute(query)  # Core rows: no ORM loading for each
    return {branch: [row[1:] for row in found] for branch, found in groupby(rows, itemgetter(0))}


def _pauses(rows: Sequence[CounterRow]) -> list[Pause]:
    """The ended pauses of one branch's counter events, as :func:`core.kpi.pauses` folds them.

    Fed the rows' fields instead of parsed events, which would cost more than the
    rest of a tenant's report. A row without a counter, or a pause without a reason,
    is malformed and skipped, as parsing would skip it.
    """
    fold = PauseFold()
    for kind, at, counter_id, actor_id, reason in rows:
        if counter_id is None:
            continue
        if kind == "counter.paused":
            if reason is not None:
                fold.paused(counter_id, at, actor_id, reason)
        else:
            fold.ended(counter_id, at)
    return fold.result()


def _key_column(key: GroupBy | None) -> ColumnElement[Any]:
    if key is None:
        return literal_column("''")
    columns: dict[str, ColumnElement[Any]] = {
        "hour": f.hour_start,
        "day": f.local_day,
        "service": f.service_id,
        "counter": f.counter_id,
        "staff": f.staff_id,
    }
    return columns[key]


def _key(raw: Any, key: GroupBy | None, zone: str) -> GroupKey:
    if key == "hour":
        return hour_key(int(raw), zone)
    if key == "day":
        return raw if isinstance(raw, date) else date.fromisoformat(str(raw))
    return str(raw)


def _where(
    tenant_id: uuid.UUID,
    branch_ids: Sequence[uuid.UUID],
    filters: Filters,
    group: ColumnElement[Any],
) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = [
        f.tenant_id == tenant_id,
        f.branch_id.in_(branch_ids),
        group.is_not(None),
    ]
    if filters.first_day is not None:
        conditions.append(f.local_day >= filters.first_day)
    if filters.last_day is not None:
        conditions.append(f.local_day <= filters.last_day)
    for picked, wanted in (
        (f.service_id, filters.service_id),
        (f.counter_id, filters.counter_id),
        (f.staff_id, filters.staff_id),
    ):
        if wanted is not None:
            conditions.append(picked == wanted)
    return and_(*conditions)


def _target(targets: Mapping[str, int | None]) -> ColumnElement[Any]:
    """Each row's service target as a CASE over the services that have one."""
    whens = [(f.service_id == s, t) for s, t in sorted(targets.items()) if t is not None]
    if not whens:
        return cast_(null(), Integer)
    return case(*whens, else_=cast_(null(), Integer))
