"""``kpi_summaries``: the KPI facts of a branch, local day and service, summed up.

A summary row holds the day's counts and its waits and service times as sorted
float64 arrays, so a report over a tenant's year reads a row per branch, day and
service (a few tens of thousands) instead of every fact (millions), and still
gets exact figures: joined, the arrays are the values themselves, so nearest-rank
percentiles, maxima, exact means and SLA counts against the current targets come
from them (:mod:`server.services.reports`). A catch-up changes the rows by the
facts it removes and adds (:func:`apply_changes`); :func:`rebuild` and
:func:`refresh_days` count them again from the facts of whole days.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Table, bindparam, delete, insert, select
from sqlalchemy.orm import Session

from core.kpi_rows import Counts
from server.models import KpiFact, KpiSummary

SUMMARIES = cast(Table, KpiSummary.__table__)
Floats = npt.NDArray[np.float64]
_F = cast(Table, KpiFact.__table__).c
_DAYS_PER_ROUND = 200
# Where each tally kind is counted.
_TALLY = {"issued": "issued", "cancelled": "cancelled", "abandoned": "abandoned"}
_TALLY |= {"transfer": "transfers", "recall": "recalls"}
# The counted columns: the fields of Counts up to the SLA ones, which depend on targets.
COUNTS = tuple(c.name for c in fields(Counts) if not c.name.startswith("sla_"))
NO_SERVICE = ""  # the service key of facts without a service

_DAY_FACTS = (
    select(_F.local_day, _F.service_id, _F.kind, _F.value, _F.hour_start, _F.no_show)
    .where(
        _F.tenant_id == bindparam("tenant_id"),
        _F.branch_id == bindparam("branch_id"),
        _F.local_day.in_(bindparam("days", expanding=True)),
    )
    .order_by(_F.local_day)
)
_DROP_DAYS = delete(SUMMARIES).where(
    SUMMARIES.c.branch_id == bindparam("of_branch"),
    SUMMARIES.c.local_day.in_(bindparam("days", expanding=True)),
)


@dataclass(slots=True)
class _Day:
    """One summary row while it is counted."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    waits: list[float] = field(default_factory=list)
    service_times: list[float] = field(default_factory=list)
    hours: Counter[int] = field(default_factory=Counter)


def summarize(rows: Iterable[Sequence[Any]]) -> dict[tuple[date, str], _Day]:
    """The summaries of fact rows (local_day, service_id, kind, value, hour_start, no_show).

    The counting rules are the fact aggregates' (:mod:`server.services.reports`): a
    segment with a value was called, and its value is a wait; every completion is
    served, and its value (when there is one) a service time.
    """
    found: dict[tuple[date, str], _Day] = {}
    for day, service, kind, value, hour, no_show in rows:
        key = (day, service or NO_SERVICE)
        summary = found.get(key)
        if summary is None:
            summary = found[key] = _Day()
        counts = summary.counts
        if kind == "segment":
            if no_show:
                counts["no_show"] += 1
            if value is not None:
                counts["called"] += 1
                summary.waits.append(value)
        elif kind == "completion":
            counts["served"] += 1
            summary.hours[int(hour)] += 1
            if value is not None:
                summary.service_times.append(value)
        elif kind in _TALLY:
            counts[_TALLY[kind]] += 1
    return found


def refresh_days(
    session: Session | Connection, tenant_id: uuid.UUID, branch_id: uuid.UUID, days: Iterable[date]
) -> None:
    """Count the summaries of ``days`` again from the branch's facts."""
    ordered = sorted(set(days))
    for start in range(0, len(ordered), _DAYS_PER_ROUND):
        chunk = ordered[start : start + _DAYS_PER_ROUND]
        params = {"tenant_id": tenant_id, "branch_id": branch_id, "days": chunk}
        found = summarize(session.execute(_DAY_FACTS, params))
        session.execute(_DROP_DAYS, {"of_branch": branch_id, "days": chunk})
        if found:
            rows = [_row(tenant_id, branch_id, k, v) for k, v in found.items()]
            session.execute(insert(SUMMARIES), rows)


_STORED = select(
    SUMMARIES.c.local_day,
    SUMMARIES.c.service_id,
    *(SUMMARIES.c[name] for name in COUNTS),
    SUMMARIES.c.waits,
    SUMMARIES.c.service_times,
    SUMMARIES.c.served_hours,
).where(
    SUMMARIES.c.branch_id == bindparam("of_branch"),
    SUMMARIES.c.local_day.in_(bindparam("days", expanding=True)),
)
_DROP_ONE = delete(SUMMARIES).where(
    SUMMARIES.c.branch_id == bindparam("of_branch"),
    SUMMARIES.c.local_day == bindparam("day"),
    SUMMARIES.c.service_id == bindparam("service"),
)
_ANY_FACT = select(_F.ticket_id).where(
    _F.tenant_id == bindparam("tenant_id"),
    _F.branch_id == bindparam("branch_id"),
    _F.local_day == bindparam("day"),
)


def apply_changes(
    session: Session | Connection,
    tenant_id: uuid.UUID,
    branch_id: uuid.UUID,
    removed: Iterable[Sequence[Any]],
    added: Iterable[Sequence[Any]],
) -> None:
    """Update the summaries for facts ``removed`` from and ``added`` to the branch.

    Both are fact rows as :func:`summarize` reads them. The stored rows of the days
    concerned are changed by the difference, so a catch-up step costs what it
    changes, not a count of its whole day. A stored row that does not hold what
    is removed (written by an older version, or edited by hand) is counted again
    from the facts instead.
    """
    minus, plus = summarize(removed), summarize(added)
    keys = minus.keys() | plus.keys()
    if not keys:
        return
    days = sorted({day for day, _ in keys})
    stored: dict[tuple[date, str], Sequence[Any]] = {}
    for start in range(0, len(days), _DAYS_PER_ROUND):
        params = {"of_branch": branch_id, "days": days[start : start + _DAYS_PER_ROUND]}
        for row in session.execute(_STORED, params):
            if (row[0], row[1]) in keys:
                stored[(row[0], row[1])] = row
    recount: set[date] = set()
    rows: list[dict[str, Any]] = []
    for key in sorted(keys):
        was = _stored_day(stored.get(key))
        now = _changed(was, minus.get(key, _Day()), plus.get(key, _Day()))
        if now is None:
            recount.add(key[0])
            continue
        if key in stored:
            session.execute(_DROP_ONE, {"of_branch": branch_id, "day": key[0], "service": key[1]})
        if _is_empty(now) and not _has_facts(session, tenant_id, branch_id, key):
            continue
        rows.append(_row(tenant_id, branch_id, key, now))
    if rows:
        session.execute(insert(SUMMARIES), rows)
    if recount:
        refresh_days(session, tenant_id, branch_id, recount)


@dataclass(slots=True)
class _Stored:
    """A summary row as stored: counts, sorted value arrays and hour counts."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    waits: Floats = field(default_factory=lambda: np.empty(0, dtype="<f8"))
    service_times: Floats = field(default_factory=lambda: np.empty(0, dtype="<f8"))
    hours: Counter[int] = field(default_factory=Counter)


def _stored_day(row: Sequence[Any] | None) -> _Stored:
    if row is None:
        return _Stored()
    waits, service_times, hours = row[2 + len(COUNTS) :]
    return _Stored(
        dict(zip(COUNTS, row[2 : 2 + len(COUNTS)], strict=True)),
        values(waits),
        values(service_times),
        Counter(served_hours(hours)),
    )


def _changed(was: _Stored, minus: _Day, plus: _Day) -> _Stored | None:
    """``was`` less ``minus`` plus ``plus``; None when ``was`` does not hold ``minus``."""
    kept = {name: was.counts[name] - minus.counts[name] for name in COUNTS}
    hours = Counter(was.hours)
    hours.subtract(minus.hours)
    waits = _without(was.waits, minus.waits)
    service_times = _without(was.service_times, minus.service_times)
    if (
        waits is None
        or service_times is None
        or min(kept.values()) < 0
        or min(hours.values(), default=0) < 0
    ):
        return None
    hours.update(plus.hours)
    return _Stored(
        {name: kept[name] + plus.counts[name] for name in COUNTS},
        _with(waits, plus.waits),
        _with(service_times, plus.service_times),
        Counter({h: n for h, n in hours.items() if n}),
    )


def _without(stored: Floats, removed: list[float]) -> Floats | None:
    """Sorted ``stored`` less one occurrence of each of ``removed``; None when one is missing."""
    if not removed:
        return stored
    gone = np.sort(np.array(removed, dtype="<f8"))
    # The k-th equal value removed is the k-th equal value stored.
    repeat = np.arange(len(gone)) - np.searchsorted(gone, gone, side="left")
    at = np.searchsorted(stored, gone, side="left") + repeat
    if at[-1] >= len(stored) or not np.array_equal(stored[at], gone):
        return None
    return np.delete(stored, at)


def _with(stored: Floats, added: list[float]) -> Floats:
    if not added:
        return stored
    new = np.sort(np.array(added, dtype="<f8"))
    return np.insert(stored, np.searchsorted(stored, new, side="right"), new)


def _is_empty(day: _Stored) -> bool:
    return not (any(day.counts.values()) or day.waits.size or day.service_times.size or day.hours)


def _has_facts(
    session: Session | Connection, tenant_id: uuid.UUID, branch_id: uuid.UUID, key: tuple[date, str]
) -> bool:
    """Whether facts remain on the key's day and service (a row of zeros stands for them)."""
    day, service = key
    service_is = _F.service_id.is_(None) if service == NO_SERVICE else _F.service_id == service
    params = {"tenant_id": tenant_id, "branch_id": branch_id, "day": day}
    return session.execute(_ANY_FACT.where(service_is).limit(1), params).first() is not None


def rebuild(session: Session | Connection, tenant_id: uuid.UUID, branch_id: uuid.UUID) -> None:
    """Count every summary of the branch again from its facts."""
    query = select(_F.local_day).where(_F.tenant_id == tenant_id, _F.branch_id == branch_id)
    days = set(session.execute(query.distinct()).scalars())
    session.execute(delete(SUMMARIES).where(SUMMARIES.c.branch_id == branch_id))
    refresh_days(session, tenant_id, branch_id, days)


def _row(
    tenant_id: uuid.UUID, branch_id: uuid.UUID, key: tuple[date, str], day: _Day | _Stored
) -> dict[str, Any]:
    hours = sorted(day.hours.items())
    return {
        "tenant_id": tenant_id,
        "branch_id": branch_id,
        "local_day": key[0],
        "service_id": key[1],
        **day.counts,
        "waits": _sorted_bytes(day.waits),
        "service_times": _sorted_bytes(day.service_times),
        "served_hours": np.array(hours, dtype="<i8").tobytes(),
    }


def _sorted_bytes(values: list[float] | Floats) -> bytes:
    return np.sort(np.asarray(values, dtype="<f8")).tobytes()


# -- reading them back ---------------------------------------------------------------


def values(raw: bytes) -> Floats:
    return np.frombuffer(raw, dtype="<f8")


def served_hours(raw: bytes) -> dict[int, int]:
    """Completions per hour of ``(hour_start, count)`` pairs, the same hour added up."""
    pairs = np.frombuffer(raw, dtype="<i8").reshape(-1, 2)
    hours, at = np.unique(pairs[:, 0], return_inverse=True)
    served = np.bincount(at, weights=pairs[:, 1], minlength=len(hours))
    return dict(zip(hours.tolist(), served.astype(np.int64).tolist(), strict=True))
