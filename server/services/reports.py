"""KPI reports from ``kpi_facts``: SQL aggregates per branch and report key.

The same queries run on SQLite and PostgreSQL: counts, SLA and served-per-hour are
grouped in SQL; waits and service times come back sorted and become
:class:`core.kpi.Distribution` values (nearest rank, exact mean), as the reference
computes them. Days and hours were bucketed in each branch's zone when the rows
were written. Pauses are folded from the branches' counter events. For one branch
the result equals :func:`core.kpi_rows.reference` over its accepted events.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from itertools import groupby
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, case, cast, func, literal_column, null, select
from sqlalchemy.orm import Session

from core.errors import MalformedEvent
from core.events import EventBase, parse_event
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
    by = [] if key is None else [group]  # PostgreSQL refuses to group or sort by a constant
    where = _where(tenant_id, list(zones), filters, group)
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
    parts: dict[uuid.UUID, dict[GroupKey, GroupParts]] = {b: {} for b in zones}

    def part(branch: uuid.UUID, raw: object) -> GroupParts:
        return parts[branch][_key(raw, key, zones[branch])]

    for branch, k, *numbers in session.execute(counts_query):
        parts[branch][_key(k, key, zones[branch])] = GroupParts(Counts(*map(int, numbers)))

    for kind, attr in (("segment", "waits"), ("completion", "service_times")):
        values_query = (
            select(f.branch_id, group, f.value)
            .where(where, f.kind == kind, f.value.is_not(None))
            .order_by(f.branch_id, *by, f.value)
        )
        rows = session.execute(values_query)
        for (branch, k), found in groupby(rows, key=lambda r: (r[0], r[1])):
            setattr(part(branch, k), attr, [r[2] for r in found])

    hours_query = (
        select(f.branch_id, group, f.hour_start, func.count())
        .where(where, f.kind == "completion")
        .group_by(f.branch_id, *by, f.hour_start)
    )
    for branch, k, hour, served in session.execute(hours_query):
        found_part = part(branch, k)
        found_part.served_by_hour = found_part.served_by_hour or {}
        found_part.served_by_hour[hour_key(hour, zones[branch])] = served

    for branch, events in _counter_events(session, tenant_id, list(zones)).items():
        folded = pauses(events)
        grouped = pause_groups(folded, key=key, filters=filters, time_zone=zones[branch])
        for k, kept in grouped.items():
            parts[branch].setdefault(k, GroupParts(Counts())).pauses = kept
    result: BranchReports = {}
    for branch, groups in parts.items():
        if key is None:
            groups.setdefault(ALL, GroupParts(Counts()))
        result[branch] = {k: assemble(groups[k]) for k in sorted(groups)}
    return result


def _counter_events(
    session: Session, tenant_id: uuid.UUID, branch_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[EventBase]]:
    query = (
        select(QueueEvent.branch_id, QueueEvent.payload)
        .where(
            QueueEvent.tenant_id == tenant_id,
            QueueEvent.branch_id.in_(branch_ids),
            QueueEvent.status == "accepted",
            QueueEvent.ticket_id.is_(None),
            QueueEvent.type.in_(("counter.paused", "counter.resumed", "counter.closed")),
        )
        .order_by(QueueEvent.branch_id, QueueEvent.server_seq)
    )
    found: dict[uuid.UUID, list[EventBase]] = {}
    for branch, payload in session.execute(query):
        try:
            found.setdefault(branch, []).append(parse_event(payload))
        except MalformedEvent:
            continue
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
    if filters.first_day is not None:
        conditions.append(f.local_day >= filters.first_day)
    if filters.last_day is not None:
        conditions.append(f.local_day <= filters.last_day)
    for column, wanted in (
        (f.service_id, filters.service_id),
        (f.counter_id, filters.counter_id),
        (f.staff_id, filters.staff_id),
    ):
        if wanted is not None:
            conditions.append(column == wanted)
    return and_(*conditions)


def _target(targets: Mapping[str, int | None]) -> ColumnElement[Any]:
    """Each row's service target as a CASE over the services that have one."""
    whens = [(f.service_id == s, t) for s, t in sorted(targets.items()) if t is not None]
    if not whens:
        return cast(null(), Integer)
    return case(*whens, else_=cast(null(), Integer))
