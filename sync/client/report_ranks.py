"""The parts of a local report read from the hourly counts and the value indexes.

Which hourly counts a report reads (the branch's when it has no service, counter
or staff filter or grouping), and, for the whole range or per day, the wait and
service distributions without reading every value: count and exact mean from the
sums in the hourly counts (:mod:`sync.client.exact_sum`), each percentile and the
maximum from one step to its rank on an index. Also the wait histogram as one
count per bin on the (kind, value, day) index.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, and_, func, literal_column, select, true
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from core.kpi import Distribution, GroupBy
from core.kpi_rows import Filters
from sync.client import exact_sum
from sync.client.store import HOUR_COUNTS, kpi_branch_hours, kpi_hours

_WAIT_SUM = [name for name in HOUR_COUNTS if name.startswith("wait_l")]
_SERVICE_SUM = [name for name in HOUR_COUNTS if name.startswith("service_l")]
_PERCENTILES = (50, 90, 95)


def ranged_histogram(conn: Connection, filters: Filters, bin_s: int, bins: int) -> list[int]:
    """:func:`wait_histogram` filtered by days alone: one count per bin over the
    (kind, value, day) index, each walking only the waits of its own bin."""
    first = filters.first_day.isoformat() if filters.first_day else ""
    last = filters.last_day.isoformat() if filters.last_day else "9999-12-31"
    edges = [float("-inf"), *(i * bin_s for i in range(1, bins)), float("inf")]
    cursor = conn.connection.cursor()
    try:
        whole = _covers(cursor, "segment", first, last)
        counts = []
        for low, high in itertools.pairwise(edges):
            if whole:
                cursor.execute(_BIN_COUNT_ALL, ("segment", low, high))
            else:
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
_BIN_COUNT_ALL = (
    "SELECT count(*) FROM kpi_facts INDEXED BY ix_kpi_facts_kind_value_day"
    " WHERE kind = ? AND value >= ? AND value < ?"
)


def _covers(cursor: Any, kind: str, first: str, last: str) -> bool:
    """Whether the days ``first``..``last`` hold every fact of ``kind``: then walks
    along the value index need not check each entry's day (a third of their cost).

    Two seeks on the (kind, day, value) index.
    """
    days = []
    for query in _FIRST_DAY, _LAST_DAY:
        cursor.execute(query, (kind,))
        days.append(cursor.fetchone()[0])
    low, high = days
    return low is None or (first <= low and high <= last)


_FIRST_DAY = "SELECT min(local_day) FROM kpi_facts WHERE kind = ?"
_LAST_DAY = "SELECT max(local_day) FROM kpi_facts WHERE kind = ?"


def ranked(
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
    h = summary(key, filters)
    group = hour_key_column(key, h)
    sums = [h.called, *(h[n] for n in _WAIT_SUM), h.served_timed, *(h[n] for n in _SERVICE_SUM)]
    query = (
        select(group, func.sum(h.inexact), *(func.sum(c) for c in sums))
        .where(hours_where(filters, group, key))
        .group_by(*([] if key is None else [group]))
    )
    found = conn.execute(query).all()
    if any(row[1] for row in found):
        return None
    first = filters.first_day.isoformat() if filters.first_day else ""
    last = filters.last_day.isoformat() if filters.last_day else "9999-12-31"
    cursor = conn.connection.cursor()
    whole = {k: _covers(cursor, k, first, last) for k in ("segment", "completion")}

    def at_rank(kind: str, raw: object, n: int, rank: int) -> float:
        descending = rank > n // 2
        skip = n - rank if descending else rank - 1
        if key is None and whole[kind]:
            cursor.execute(_WHOLE_STEP[descending], (kind, skip))
        elif key is None:
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
_WHOLE_STEP = {
    False: "SELECT value FROM kpi_facts INDEXED BY ix_kpi_facts_kind_value_day"
    " WHERE kind = ? AND value IS NOT NULL ORDER BY value ASC LIMIT 1 OFFSET ?",
    True: "SELECT value FROM kpi_facts INDEXED BY ix_kpi_facts_kind_value_day"
    " WHERE kind = ? AND value IS NOT NULL ORDER BY value DESC LIMIT 1 OFFSET ?",
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


def summary(key: GroupBy | None, filters: Filters) -> ReadOnlyColumnCollection[str, Column[Any]]:
    """The columns of the hourly counts a report reads: the branch's when it can."""
    if key in ("service", "counter", "staff") or any(
        (filters.service_id, filters.counter_id, filters.staff_id)
    ):
        return kpi_hours.c
    return kpi_branch_hours.c


def hour_key_column(
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


def hours_where(
    filters: Filters, group: ColumnElement[object], key: GroupBy | None
) -> ColumnElement[bool]:
    """:func:`_where` on the hourly counts, where '' stands for no service, counter or staff."""
    h = summary(key, filters)
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
