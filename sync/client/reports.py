"""Branch reports from the local cache: SQL over ``kpi_facts``, offline.

Counts, SLA and served-per-hour are SQL aggregates grouped by the report key; the
waits and service times come back sorted from SQL and become distributions with
:class:`core.kpi.Distribution` (nearest rank and an exact mean, as the reference
computes them). Pauses are folded from the few counter events. The result equals
:func:`core.kpi_rows.reference` over the live events.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from itertools import groupby
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
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
from sync.client.store import kpi_facts

f = kpi_facts.c


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
    group = _key_column(key)
    where = _where(filters, group)
    parts: dict[GroupKey, GroupParts] = {}
    for k, counts in _counts(conn, group, key, where, targets):
        parts[_key(k, key, time_zone)] = GroupParts(counts)

    for kind, attr in (("segment", "waits"), ("completion", "service_times")):
        values_query = _values(group, where, kind)
        for k, rows in groupby(conn.execute(values_query), key=lambda r: r[0]):
            setattr(parts[_key(k, key, time_zone)], attr, [r[1] for r in rows])

    by = [] if key is None else [group]
    hours_query = (
        select(group, f.hour_start, func.count())
        .where(where, f.kind == "completion")
        .group_by(*by, f.hour_start)
    )
    for k, hour, served in conn.execute(hours_query):
        found = parts[_key(k, key, time_zone)]
        found.served_by_hour = found.served_by_hour or {}
        found.served_by_hour[hour_key(hour, time_zone)] = served

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
    group = _key_column(key)
    where = _where(filters or Filters(), group)
    found = {_key(k, key, time_zone): c for k, c in _counts(conn, group, key, where, targets)}
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
    where = _where(filters or Filters(), literal_column("''"))
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


def _values(group: ColumnElement[object], where: ColumnElement[bool], kind: str) -> Select[Any]:
    return (
        select(group, f.value)
        .where(where, f.kind == kind, f.value.is_not(None))
        .order_by(group, f.value)
    )


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
        return hour_key(int(raw), time_zone)  # type: ignore[call-overload]
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
