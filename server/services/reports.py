"""KPI reports from ``kpi_summaries`` and ``kpi_facts``: per branch and report key.

The reports a tenant reads across branches (the whole range or some days, by
branch, day or service, for one service or all) come from the summaries: a row per
branch, day and service with its counts and its waits and service times as sorted
arrays, merged here into exact distributions (nearest rank, exact mean) and SLA
counts against the services' current targets. Filters by counter or staff member,
and groups by hour, counter or staff member, read the facts: on PostgreSQL in one
scan that returns each group's values and completion hours as binary arrays, on
SQLite (a branch's worth) as counts, then each group's values in order, then its
hours. Days and hours were bucketed in each branch's zone when the rows were
written. Pauses come from ``kpi_pauses``, folded when the facts caught up. For one
branch the result equals :func:`core.kpi_rows.reference` over its accepted events.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from itertools import groupby
from typing import Any, cast

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    and_,
    case,
    func,
    literal_column,
    null,
    select,
    text,
)
from sqlalchemy import cast as cast_
from sqlalchemy.orm import Session

from core.kpi import Distribution, GroupBy, KpiReport, nearest_rank
from core.kpi_facts import Pause
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
from server.models import KpiFact, KpiPause
from server.services import kpi_summaries as sums

f = KpiFact.__table__.c
p_ = cast(Table, KpiPause.__table__).c
summary = sums.SUMMARIES.c
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
    summarized = key in _SUMMARIZED_KEYS and filters.counter_id is None and filters.staff_id is None
    if summarized:
        found = _summary_parts(session, tenant_id, list(zones), targets, key, filters)
    else:
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
    if summarized:
        for (branch, k), times in _pause_times(session, tenant_id, list(zones), key, filters):
            parts[branch].setdefault(k, GroupParts(Counts())).pause_times = times
    else:
        for branch, folded in _pauses(session, tenant_id, list(zones), filters).items():
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
    rows = _binary_rows(session, query)
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


def _binary_rows(session: Session, query: Select[Any]) -> list[Any]:
    """The rows of ``query`` on PostgreSQL, read in binary through the driver's cursor:
    arrays and byte strings as they are stored, not as text to parse."""
    compiled = query.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    connection = session.connection().connection.dbapi_connection
    assert connection is not None  # the session's connection is checked out
    cursor = connection.cursor(binary=True)  # type: ignore[call-arg]
    try:
        cursor.execute(str(compiled), compiled.params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


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


def _pauses(
    session: Session, tenant_id: uuid.UUID, branch_ids: Sequence[uuid.UUID], filters: Filters
) -> dict[uuid.UUID, list[Pause]]:
    """Each branch's ended pauses that started within the filter's days."""
    columns = (p_.counter_id, p_.staff_id, p_.reason, p_.started_at, p_.ended_at, p_.seconds)
    query = (
        select(p_.branch_id, *columns)
        .where(*_ended_pauses(tenant_id, branch_ids, filters))
        .order_by(p_.branch_id, p_.id)
    )
    rows = session.connection().execute(query)  # Core rows: no ORM loading for each
    return {
        branch: [Pause(*row[1:]) for row in found]
        for branch, found in groupby(rows, lambda row: row[0])
    }


def _ended_pauses(
    tenant_id: uuid.UUID, branch_ids: Sequence[uuid.UUID], filters: Filters
) -> list[ColumnElement[bool]]:
    """The ended pauses of the branches that started within the filter's days."""
    return [
        p_.tenant_id == tenant_id,
        p_.branch_id.in_(branch_ids),
        p_.ended_at.is_not(None),
        *_day_range(p_.local_day, filters),
    ]


def _pause_times(
    session: Session,
    tenant_id: uuid.UUID,
    branch_ids: Sequence[uuid.UUID],
    key: GroupBy | None,
    filters: Filters,
) -> Iterator[tuple[tuple[uuid.UUID, GroupKey], list[tuple[str, float]]]]:
    """(reason, seconds) of the ended pauses per branch and group, for the keys and
    filters of the summaries: :func:`core.kpi_rows.pause_groups` without the pauses.

    A pause has no service: a service filter keeps none, grouping by service puts
    them in no group.
    """
    if key == "service" or filters.service_id is not None:
        return
    group = literal_column("''") if key is None else p_.local_day
    query = (
        select(_as_text(p_.branch_id), group, p_.reason, p_.seconds)
        .where(*_ended_pauses(tenant_id, branch_ids, filters))
        .order_by(p_.branch_id, *([] if key is None else [group]))
    )
    rows = session.connection().execute(query).all()
    branches = _by_text(branch_ids)
    for (branch, k), found in groupby(rows, lambda row: (row[0], row[1])):
        yield (branches[branch], k), [(reason, seconds) for _, _, reason, seconds in found]


def _as_text(column: ColumnElement[uuid.UUID]) -> ColumnElement[str]:
    """A branch id column as text: thousands of rows name the same few branches, and
    the driver would make a new UUID of each (slowly, when reading binary)."""
    return cast_(column, String)


def _by_text(branch_ids: Sequence[uuid.UUID]) -> dict[str, uuid.UUID]:
    """Branch ids by their text in :func:`_as_text` (with dashes on PostgreSQL, plain
    hex on SQLite)."""
    return {str(b): b for b in branch_ids} | {b.hex: b for b in branch_ids}


# -- from the summaries ------------------------------------------------------------------

_SUMMARIZED_KEYS = (None, "day", "service")


@dataclass(slots=True)
class _Merging:
    """One group's summary rows while they are added up: counts, and the raw arrays."""

    counts: list[int] = field(default_factory=lambda: [0] * 10)
    waits: dict[str, list[bytes]] = field(default_factory=dict)  # per service
    service_times: list[bytes] = field(default_factory=list)
    served_hours: list[bytes] = field(default_factory=list)


def _summary_parts(
    session: Session,
    tenant_id: uuid.UUID,
    branch_ids: Sequence[uuid.UUID],
    targets: Mapping[str, int | None],
    key: GroupBy | None,
    filters: Filters,
) -> RawParts:
    """The groups' parts from the summary rows of their days and services."""
    conditions = [
        summary.tenant_id == tenant_id,
        summary.branch_id.in_(branch_ids),
        *_day_range(summary.local_day, filters),
    ]
    if filters.service_id is not None:
        conditions.append(summary.service_id == filters.service_id)
    if key == "service":
        conditions.append(summary.service_id != sums.NO_SERVICE)
    counted = [summary[name] for name in sums.COUNTS]
    query = select(
        _as_text(summary.branch_id),
        summary.local_day,
        summary.service_id,
        summary.waits,
        summary.service_times,
        summary.served_hours,
        *counted,
    ).where(*conditions)
    if session.get_bind().dialect.name == "postgresql":
        rows = _binary_rows(session, query)  # tens of megabytes of arrays: not as hex text
    else:
        rows = list(session.connection().execute(query))
    merging: dict[tuple[str, Any], _Merging] = {}
    branches = _by_text(branch_ids)
    for branch, day, service, waits, times, hours, *numbers in rows:
        k = ALL if key is None else day if key == "day" else service
        group = merging.get((branch, k))
        if group is None:
            group = merging[branch, k] = _Merging()
        counts = group.counts
        for at, n in enumerate(numbers):  # sums.COUNTS are the first fields of Counts
            counts[at] += n
        group.waits.setdefault(service, []).append(waits)
        group.service_times.append(times)
        group.served_hours.append(hours)
    return {(branches[b], k): _merged(group, targets) for (b, k), group in merging.items()}


def _merged(
    group: _Merging, targets: Mapping[str, int | None]
) -> tuple[GroupParts, dict[int, int]]:
    """A group's parts from its rows' arrays: distributions, SLA counts, hours."""
    counts = group.counts
    waits = []
    for service, raw in group.waits.items():
        called = sums.values(b"".join(raw))
        waits.append(called)
        target = targets.get(service)
        if target is not None:
            counts[_SLA_ELIGIBLE] += len(called)
            counts[_SLA_MET] += int(np.count_nonzero(called <= target))
    part = GroupParts(
        Counts(*counts),
        wait=_distribution(np.concatenate(waits)),
        service=_distribution(sums.values(b"".join(group.service_times))),
    )
    return part, sums.served_hours(b"".join(group.served_hours))


def _distribution(values: sums.Floats) -> Distribution:
    """What :meth:`Distribution.of` gives for ``values``: the percentiles picked by
    partitioning around their ranks instead of sorting them all."""
    n = len(values)
    if not n:
        return Distribution.of(())
    ranks = [nearest_rank(p, n) - 1 for p in (50, 90, 95)]
    picked = np.partition(values, [*ranks, n - 1])
    p50, p90, p95 = (float(picked[r]) for r in ranks)
    return Distribution(n, math.fsum(values.tolist()) / n, p50, p90, p95, float(picked[n - 1]))


def _day_range(column: ColumnElement[date], filters: Filters) -> list[ColumnElement[bool]]:
    found = []
    if filters.first_day is not None:
        found.append(column >= filters.first_day)
    if filters.last_day is not None:
        found.append(column <= filters.last_day)
    return found


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
    conditions += _day_range(f.local_day, filters)
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
