"""Branch reports from the local cache: SQL over ``kpi_facts`` and its hourly counts, offline.

Counts, SLA and served-per-hour are SQL aggregates grouped by the report key, over
the hourly counts (``kpi_hours``, or ``kpi_branch_hours`` without a service, counter
or staff filter or grouping) when they were counted with the report's zone and
targets, otherwise over the facts themselves. For the whole range or per day, the
wait and service distributions come from exact sums and steps to ranks on the value
indexes (:mod:`sync.client.report_ranks`); for other groupings the values are read in
one query per kind through the DB-API cursor (covered by the ``(kind, local_day,
value, ...)`` index) and become distributions with :class:`core.kpi.Distribution`.
Either way nearest rank and an exact mean, as the reference computes them. Pauses
are folded from the few counter events. The result equals
:func:`core.kpi_rows.reference` over the live events.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
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
)

from core.events import EventBase
from core.kpi import GroupBy, KpiReport, pauses
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
from sync.client.kpi_store import targets_key
from sync.client.report_ranks import hour_key_column, hours_where, ranged_histogram, ranked, summary
from sync.client.store import HOUR_COUNTS, kpi_facts, kpi_meta

f = kpi_facts.c
_COUNTS = HOUR_COUNTS[1 : HOUR_COUNTS.index("served_timed")]  # the fields of Counts


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

    found_ranks = ranked(conn, key, filters) if hours else None
    if found_ranks is not None:
        for k, (wait, service) in found_ranks.items():
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
        return ranged_histogram(conn, filters, bin_s, bins)
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
    h = summary(key, filters)
    group = hour_key_column(key, h)
    query = (
        select(group.label("k"), *(func.coalesce(func.sum(h[n]), 0) for n in _COUNTS))
        .where(hours_where(filters, group, key))
        .group_by(*([] if key is None else [group]))
    )
    for k, *numbers in conn.execute(query):
        yield k, Counts(*(int(n) for n in numbers))


def _served_by_hour(
    conn: Connection, key: GroupBy | None, filters: Filters, hours: bool
) -> Iterator[tuple[object, int, int]]:
    """(raw key, hour_start, completions) of every group and hour with a completion."""
    if hours:
        h = summary(key, filters)
        group = hour_key_column(key, h)
        served = func.sum(h.served)
        query = (
            select(group, h.hour_start, served)
            .where(hours_where(filters, group, key))
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
