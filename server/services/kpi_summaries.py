"""``kpi_summaries``: the KPI facts of a branch, local day and service, summed up.

A summary row holds the day's counts and its waits and service times as sorted
float64 arrays, so a report over a tenant's year reads a row per branch, day and
service (a few tens of thousands) instead of every fact (millions), and still
gets exact figures: joined, the arrays are the values themselves, so nearest-rank
percentiles, maxima, exact means and SLA counts against the current targets come
from them (:mod:`server.services.reports`). Rows are counted again from the facts
of whole days: a catch-up names the days its rewritten tickets had and have facts on.
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


def rebuild(session: Session | Connection, tenant_id: uuid.UUID, branch_id: uuid.UUID) -> None:
    """Count every summary of the branch again from its facts."""
    query = select(_F.local_day).where(_F.tenant_id == tenant_id, _F.branch_id == branch_id)
    days = set(session.execute(query.distinct()).scalars())
    session.execute(delete(SUMMARIES).where(SUMMARIES.c.branch_id == branch_id))
    refresh_days(session, tenant_id, branch_id, days)


def _row(
    tenant_id: uuid.UUID, branch_id: uuid.UUID, key: tuple[date, str], day: _Day
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


def _sorted_bytes(values: list[float]) -> bytes:
    return np.sort(np.array(values, dtype="<f8")).tobytes()


# -- reading them back ---------------------------------------------------------------

Floats = npt.NDArray[np.float64]


def values(raw: bytes) -> Floats:
    return np.frombuffer(raw, dtype="<f8")


def served_hours(raw: bytes) -> dict[int, int]:
    """Completions per hour of ``(hour_start, count)`` pairs, the same hour added up."""
    pairs = np.frombuffer(raw, dtype="<i8").reshape(-1, 2)
    hours, at = np.unique(pairs[:, 0], return_inverse=True)
    served = np.bincount(at, weights=pairs[:, 1], minlength=len(hours))
    return dict(zip(hours.tolist(), served.astype(np.int64).tolist(), strict=True))
