"""Branch reports from the local cache: SQL over ``kpi_facts`` and ``kpi_hours``, offline.

Counts, SLA and served-per-hour are SQL aggregates grouped by the report key, over
the hourly counts of ``kpi_hours`` when they were counted with the report's zone and
targets (otherwise over the facts themselves). The waits and service times of each
group are read in one query per kind through the DB-API cursor (from the
``(kind, local_day, value)`` index when only days filter them) and become
distributions with :class:`core.kpi.Distribution` (nearest rank and an exact mean,
as the reference computes them). Pauses are folded from the few counter events. The
result equals :func:`core.kpi_rows.reference` over the live events.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Integer,
    and_,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    true,
)
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from core.events import EventBase
from core.kpi import Distribution, GroupBy, KpiReport, pauses
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
from sync.client import exact_sum
from sync.client.kpi_store import targets_key
from sync.client.store import HOUR_COUNTS, kpi_branch_hours, kpi_facts, kpi_hours, kpi_meta

f = kpi_facts.c
_COUNTS = HOUR_COUNTS[1 : HOUR_COUNTS.index("served_timed")]  # the fields of Counts
_WAIT_SUM = [name for name in HOUR_COUNTS if name.startswith("wait_l")]
_SERVICE_SUM = [name for name in HOUR_COUNTS if name.startswith("service_l")]
_PERCENTILES = (50, 90, 95)


@lru_cache(maxsize=1 << 16)
def _hour_key(hour_start: int, time_zone: str) -> datetime:
    """:func:`hour_key`, remembered: a year's report names each of its hours a few times."""
    return hour_key(hour_start, time_zone)


def branch_report(
    conn: Connection,
    *,
    targets: Mapping[str, int | None],
    time_zone: str,
    counter_events: Sequence[EventBase],
    key: GroupBy | None = None,
    filters: Filters | None = None,
) -> dict[GroupKey, KpiReport]:
    """KPIs per ``key`` (one group ``ALL`` when None, present even when empty)."""
    filters = filters or Filters()
    hours = _hours_current(conn, targets, time_zone)
    parts: dict[GroupKey, GroupParts] = {}
    for k, counts in _group_counts(conn, key, filters, targets, hours):
        parts[_key(k, key, time_zone)] = GroupParts(counts)

    ranked = _ranked(conn, key, filters) if hours else None
    if ranked is not None:
        for k, (wait, service) in ranked.items():
            found = parts[_key(k, key, time_zone)]
            found.wait, found.service = wait, service
    else:
        for kind, attr in (("segment", "waits"), ("completion", "service_times")):
            for k, values in _values(conn, key, filters, kind).items():
                setattr(parts[_key(k, key, time_zone)], attr, values)

    for k, hour, served in _served_by_hour(conn, key, filters, hours):
        found = parts[_key(k, key, time_zone)]
        found.served_by_hour = found.served_by_hour or {}
        found.served_by_hour[_hour_key(hour, time_zone)] = served

    folded = pauses(counter_events)
    for k, kept in pause_groups(folded, key=key, filters=filters, time_zone=time_zone).items():
        parts.setdefault(k, GroupParts(Counts())).pauses = kept
    if key is None:
        parts.setdefault(ALL, GroupParts(Counts()))
    return {k: assemble(parts[k]) for k in sorted(parts)}


def counts_by(
    conn: Connection,
    *,
    targets: Mapping[str, int | None],
    time_zone: str,
    key: GroupBy,
    filters: Filters | None = None,
) -> dict[GroupKey, Counts]:
    """Only the counts of :func:`branch_report` per ``key`` (no distributions, no pauses).

    For charts over many groups (arrivals and served per hour, SLA per day), where
    fetching every wait of every group would be wasted.
    """
    hours = _hours_current(conn, targets, time_zone)
    found = {
        _key(k, key, time_zone): c
        for k, c in _group_counts(conn, key, filters or Filters(), targets, hours)
    }
    return dict(sorted(found.items()))


def wait_histogram(
    conn: Connection, *, filters: Filters | None = None, bin_s: int, bins: int
) -> list[int]:
    """How many called segments waited [i * bin_s, (i + 1) * bin_s) seconds, per bin ``i``.

    The last bin is open-ended (it holds every longer wait); a negative wait (a skewed
    device clock) counts in the first. The waits are those of the report's ``wait``
    distribution for the same filters, so the bins add up to its count.
    """
    if bin_s <= 0 or bins <= 0:
        raise ValueError("a histogram needs a positive bin width and bin count")
    filters = filters or Filters()
    if not any((filters.service_id, filters.counter_id, filters.staff_id)):
        return _ranged_histogram(conn, filters, bin_s, bins)
    where = _where(filters, literal_column("''"))
    raw = cast(f.value / bin_s, Integer)
    index = case((f.value < 0, 0), (raw >= bins - 1, bins - 1), else_=raw)
    query = (
        select(index.label("bin"), func.count())
        .where(where, f.kind == "segment", f.value.is_not(None))
        .group_by(index)
    )
    counts = [0] * bins
    for found, n in conn.execute(query):
        counts[int(found)] += int(n)
    return counts


def _ranged_histogram(conn: Connection, filters: Filters, bin_s: int, bins: int) -> list[int]:
    """:func:`wait_histogram` filtered by days alone: one count per bin over the
    (kind, value, day) index, each walking only the waits of its own bin."""
    first = filters.first_day.isoformat() if filters.first_day else ""
    last = filters.last_day.isoformat() if filters.last_day else "9999-12-31"
    edges = [float("-inf"), *(i * bin_s for i in range(1, bins)), float("inf")]
    cursor = conn.connection.cursor()
    try:
        counts = []
        for low, high in itertools.pairwise(edges):
            cursor.execute(_BIN_COUNT, ("segment", low, high, first, last))
            row = cursor.fetchone()
            assert row is not None  # an aggregate always answers
            counts.append(int(row[0]))
        return counts
    finally:
        cursor.close()


_BIN_COUNT = (
    "SELECT count(*) FROM kpi_facts INDEXED BY ix_kpi_facts_kind_value_day"
    " WHERE kind = ? AND value >= ? AND value < ? AND local_day >= ? AND local_day <= ?"
)


def _hours_current(conn: Connection, targets: Mapping[str, int | None], time_zone: str) -> bool:
    """Whether ``kpi_hours`` holds the counts of the facts for this zone and these targets."""
    meta = conn.execute(select(kpi_meta.c.time_zone, kpi_meta.c.targets)).first()
    return meta is not None and (meta.time_zone, meta.targets) == (
        time_zone,
        targets_key(targets),
    )


def _group_counts(
    conn: Connection,
    key: GroupBy | None,
    filters: Filters,
    targets: Mapping[str, int | None],
    hours: bool,
) -> Iterator[tuple[object, Counts]]:
    if not hours:
        group = _key_column(key)
        return _counts(conn, group, key, _where(filters, group), targets)
    return _hour_counts(conn, key, filters)


def _hour_counts(
    conn: Connection, key: GroupBy | None, filters: Filters
) -> Iterator[tuple[object, Counts]]:
    """:func:`_counts` from the hourly counts: sums of far fewer rows."""
    h = _summary(key, filters)
    group = _hour_key_column(key, h)
    query = (
        select(group.label("k"), *(func.coalesce(func.sum(h[n]), 0) for n in _COUNTS))
        .where(_hours_where(filters, group, key))
        .group_by(*([] if key is None else [group]))
    )
    for k, *numbers in conn.execute(query):
        yield k, Counts(*(int(n) for n in numbers))


def _served_by_hour(
    conn: Connection, key: GroupBy | None, filters: Filters, hours: bool
) -> Iterator[tuple[object, int, int]]:
    """(raw key, hour_start, completions) of every group and hour with a completion."""
    if hours:
        h = _summary(key, filters)
        group = _hour_key_column(key, h)
        served = func.sum(h.served)
        query = (
            select(group, h.hour_start, served)
            .where(_hours_where(filters, group, key))
            .group_by(*([] if key is None else [group]), h.hour_start)
            .having(served > 0)
        )
    else:
        group = _key_column(key)
        query = (
            select(group, f.hour_start, func.count())
            .where(_where(filters, group), f.kind == "completion")
            .group_by(*([] if key is None else [group]), f.hour_start)
        )
    for k, hour, n in conn.execute(query):
        yield k, int(hour), int(n)


def _ranked(
    conn: Connection, key: GroupBy | None, filters: Filters
) -> dict[object, tuple[Distribution, Distribution]] | None:
    """The wait and service distributions per group without reading every value.

    Only for the whole range or per day, filtered by days alone (what the indexes
    cover), and only when every value has an exact sum in ``kpi_hours``; None
    otherwise. Count and exact mean come from the hourly sums; each percentile and
    the maximum is one indexed step to its rank, from the nearer end.
    """
    if key not in (None, "day") or any((filters.service_id, filters.counter_id, filters.staff_id)):
        return None
    h = _summary(key, filters)
    group = _hour_key_column(key, h)
    sums = [h.called, *(h[n] for n in _WAIT_SUM), h.served_timed, *(h[n] for n in _SERVICE_SUM)]
    query = (
        select(group, func.sum(h.inexact), *(func.sum(c) for c in sums))
        .where(_hours_where(filters, group, key))
        .group_by(*([] if key is None else [group]))
    )
    found = conn.execute(query).all()
    if any(row[1] for row in found):
        return None
    first = filters.first_day.isoformat() if filters.first_day else ""
    last = filters.last_day.isoformat() if filters.last_day else "9999-12-31"
    cursor = conn.connection.cursor()

    def at_rank(kind: str, raw: object, n: int, rank: int) -> float:
        descending = rank > n // 2
        skip = n - rank if descending else rank - 1
        if key is None:
            cursor.execute(_RANGE_STEP[descending], (kind, first, last, skip))
        else:
            cursor.execute(_DAY_STEP[descending], (kind, raw, skip))
        row = cursor.fetchone()
        assert row is not None  # the rank is within the group's count
        return float(row[0])

    def day_ranks(kind: str, raw: object, n: int, ranks: list[int]) -> list[float]:
        """The values at ``ranks`` of one day in one query (a day has few values)."""
        descending = tuple(rank > n // 2 for rank in ranks)
        params: list[object] = []
        for rank, down in zip(ranks, descending, strict=True):
            params += [kind, raw, n - rank if down else rank - 1]
        cursor.execute(_day_steps(descending), params)
        row = cursor.fetchone()
        assert row is not None  # one row of scalar subqueries
        assert None not in row  # the ranks are within the day's count
        return [float(v) for v in row]

    def distribution(kind: str, raw: object, n: int, limbs: Sequence[int]) -> Distribution:
        if not n:
            return Distribution.of(())
        ranks = [-(-p * n // 100) for p in _PERCENTILES] + [n]  # nearest rank, and the max
        if key is None:
            p50, p90, p95, top = (at_rank(kind, raw, n, rank) for rank in ranks)
        else:
            p50, p90, p95, top = day_ranks(kind, raw, n, ranks)
        return Distribution(n, exact_sum.total(limbs) / n, p50, p90, p95, top)

    result: dict[object, tuple[Distribution, Distribution]] = {}
    width = len(_WAIT_SUM)
    try:
        for raw, _, called, *rest in found:
            waits, (served, *service) = rest[:width], rest[width:]
            if called is None:  # the empty aggregate of an ungrouped report
                continue
            result[raw] = (
                distribution("segment", raw, int(called), waits),
                distribution("completion", raw, int(served), service),
            )
    finally:
        cursor.close()
    return result


# One step to a rank, from the nearer end: the index names are there so that SQLite
# walks the index in value order instead of sorting the range.
_RANGE_STEP = {
    False: "SELECT value FROM kpi_facts INDEXED BY ix_kpi_facts_kind_value_day"
    " WHERE kind = ? AND value IS NOT NULL AND local_day >= ? AND local_day <= ?"
    " ORDER BY value ASC LIMIT 1 OFFSET ?",
    True: "SELECT value FROM kpi_facts INDEXED BY ix_kpi_facts_kind_value_day"
    " WHERE kind = ? AND value IS NOT NULL AND local_day >= ? AND local_day <= ?"
    " ORDER BY value DESC LIMIT 1 OFFSET ?",
}
_DAY_STEP = {
    False: "SELECT value FROM kpi_facts INDEXED BY ix_kpi_facts_kind_day_value"
    " WHERE kind = ? AND local_day = ? AND value IS NOT NULL"
    " ORDER BY value ASC LIMIT 1 OFFSET ?",
    True: "SELECT value FROM kpi_facts INDEXED BY ix_kpi_facts_kind_day_value"
    " WHERE kind = ? AND local_day = ? AND value IS NOT NULL"
    " ORDER BY value DESC LIMIT 1 OFFSET ?",
}


@lru_cache(maxsize=16)
def _day_steps(descending: tuple[bool, ...]) -> str:
    """One row of the values at several ranks of a day, each from its nearer end."""
    return "SELECT " + ", ".join(f"({_DAY_STEP[down]})" for down in descending)


def _values(
    conn: Connection, key: GroupBy | None, filters: Filters, kind: str
) -> dict[object, list[float]]:
    """The values of ``kind`` facts per raw group key, unsorted.

    Hundreds of thousands of them for a year: read with the DB-API cursor's
    ``fetchall``, without building a SQLAlchemy row for each.
    """
    group = _key_column(key)
    picked = [f.value] if key is None else [group, f.value]
    query = select(*picked).where(_where(filters, group), f.kind == kind, f.value.is_not(None))
    compiled = query.compile(dialect=conn.dialect)
    params = [compiled.params[name] for name in compiled.positiontup or ()]
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), params)
        if key is None:
            values = [v for (v,) in cursor.fetchall()]
            return {ALL: values} if values else {}
        groups: dict[object, list[float]] = {}
        for k, v in cursor.fetchall():
            found = groups.get(k)
            if found is None:
                groups[k] = [v]
            else:
                found.append(v)
        return groups
    finally:
        cursor.close()


def _summary(key: GroupBy | None, filters: Filters) -> ReadOnlyColumnCollection[str, Column[Any]]:
    """The columns of the hourly counts a report reads: the branch's when it can."""
    if key in ("service", "counter", "staff") or any(
        (filters.service_id, filters.counter_id, filters.staff_id)
    ):
        return kpi_hours.c
    return kpi_branch_hours.c


def _hour_key_column(
    key: GroupBy | None, h: ReadOnlyColumnCollection[str, Column[Any]]
) -> ColumnElement[object]:
    if key is None:
        return literal_column("''")
    name = {
        "hour": "hour_start",
        "day": "local_day",
        "service": "service_id",
        "counter": "counter_id",
        "staff": "staff_id",
    }[key]
    return h[name]


def _hours_where(
    filters: Filters, group: ColumnElement[object], key: GroupBy | None
) -> ColumnElement[bool]:
    """:func:`_where` on the hourly counts, where '' stands for no service, counter or staff."""
    h = _summary(key, filters)
    conditions: list[ColumnElement[bool]] = []
    if key in ("service", "counter", "staff"):
        conditions.append(group != "")
    if filters.first_day is not None:
        conditions.append(h.local_day >= filters.first_day.isoformat())
    if filters.last_day is not None:
        conditions.append(h.local_day <= filters.last_day.isoformat())
    for name, wanted in (
        ("service_id", filters.service_id),
        ("counter_id", filters.counter_id),
        ("staff_id", filters.staff_id),
    ):
        if wanted is not None:
            conditions.append(h[name] == wanted)
    return and_(true(), *conditions)


def _counts(
    conn: Connection,
    group: ColumnElement[object],
    key: GroupBy | None,
    where: ColumnElement[bool],
    targets: Mapping[str, int | None],
) -> Iterator[tuple[object, Counts]]:
    """The counters of each group, as (raw key, counts)."""
    by = [] if key is None else [group]  # PostgreSQL refuses to group or sort by a constant
    target = _target(targets)
    called = f.value.is_not(None)
    segment = f.kind == "segment"

    def count(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    query = (
        select(
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
        .group_by(*by)
    )
    for k, *numbers in conn.execute(query):
        yield k, Counts(*(int(n) for n in numbers))


def _key_column(key: GroupBy | None) -> ColumnElement[object]:
    if key is None:
        return literal_column("''")
    return {
        "hour": f.hour_start,
        "day": f.local_day,
        "service": f.service_id,
        "counter": f.counter_id,
        "staff": f.staff_id,
    }[key]


def _key(raw: object, key: GroupBy | None, time_zone: str) -> GroupKey:
    if key == "hour":
        return _hour_key(int(raw), time_zone)  # type: ignore[call-overload]
    if key == "day":
        return date.fromisoformat(str(raw))
    return str(raw)


def _where(filters: Filters, group: ColumnElement[object]) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = [group.is_not(None)]
    if filters.first_day is not None:
        conditions.append(f.local_day >= filters.first_day.isoformat())
    if filters.last_day is not None:
        conditions.append(f.local_day <= filters.last_day.isoformat())
    for column, wanted in (
        (f.service_id, filters.service_id),
        (f.counter_id, filters.counter_id),
        (f.staff_id, filters.staff_id),
    ):
        if wanted is not None:
            conditions.append(column == wanted)
    return and_(*conditions)


def _target(targets: Mapping[str, int | None]) -> ColumnElement[Any]:
    """Each row's service target as a CASE over the (few) services that have one."""
    whens = [(f.service_id == s, t) for s, t in sorted(targets.items()) if t is not None]
    if not whens:
        return cast(null(), Integer)
    return case(*whens, else_=cast(null(), Integer))
