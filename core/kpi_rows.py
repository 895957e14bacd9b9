"""KPI facts as flat rows for SQL, and KPI reports assembled from SQL aggregates.

The SQL versions (the console's cache and the service) store one row per fact of
:mod:`core.kpi_facts`: a queue segment, a completion or a counted tally, each with
the service, counter and staff member it is attributed to and its branch-local day
and hour (bucketed here, in Python, with the branch's IANA zone, so SQLite and
PostgreSQL group alike). A ticket's rows depend only on its own events, so a
store rewrites the rows of the tickets a write touched. Pauses come from counter
events, folded with :class:`core.kpi_facts.PauseFold` (the console at query time, the
service as its facts catch up).

:func:`reference` is the reference for filtered and grouped reports: the facts of
:func:`core.kpi_facts.collect`, kept when they pass the :class:`Filters` (by the
same attribution as :func:`core.kpi.compute_grouped`), then reported per group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from core.errors import InvalidValue
from core.events import EventBase
from core.kpi import (
    Distribution,
    GroupBy,
    KpiReport,
    Pause,
    _grouped,
    _local_hour,
    _rate,
    _report,
    _sums,
    _Where,
    _zone,
)
from core.kpi_facts import Facts, SegmentEnd, collect
from core.values import TimeZoneName

FactKind = Literal[
    "segment", "completion", "issued", "abandoned", "cancelled", "transfer", "recall"
]
GroupKey = datetime | date | str
ALL: str = ""  # the key of the single group of an ungrouped report


@dataclass(frozen=True, slots=True)
class FactRow:
    """One stored fact; ``value`` is the wait (segment) or service time (completion)."""

    ticket_id: str
    ord: int  # 0, 1, … per ticket: (ticket_id, ord) is unique
    kind: FactKind
    service_id: str | None
    counter_id: str | None
    staff_id: str | None
    local_day: date
    hour_start: int  # the branch-local hour's start, in Unix seconds
    value: float | None
    no_show: bool  # a segment that ended in a no-show


@dataclass(frozen=True, slots=True)
class Filters:
    """Which facts a report keeps; days are branch-local and inclusive."""

    first_day: date | None = None
    last_day: date | None = None
    service_id: str | None = None
    counter_id: str | None = None
    staff_id: str | None = None

    def __post_init__(self) -> None:
        if self.first_day and self.last_day and self.last_day < self.first_day:
            raise InvalidValue("to", "the range ends before it starts")

    def keeps(self, day: date, service: str | None, counter: str | None, staff: str | None) -> bool:
        return (
            (self.first_day is None or day >= self.first_day)
            and (self.last_day is None or day <= self.last_day)
            and (self.service_id is None or service == self.service_id)
            and (self.counter_id is None or counter == self.counter_id)
            and (self.staff_id is None or staff == self.staff_id)
        )


def fact_rows(events: Iterable[EventBase], time_zone: str | TimeZoneName) -> list[FactRow]:
    """The rows of every ticket in ``events`` (each ticket's events complete, in order).

    Events without a ticket (counter events) are skipped: pauses are not rows.
    """
    zone = _zone(time_zone)
    by_ticket: dict[str, list[EventBase]] = {}
    for event in events:
        ticket_id = getattr(event, "ticket_id", None)
        if isinstance(ticket_id, str):
            by_ticket.setdefault(ticket_id, []).append(event)
    rows: list[FactRow] = []
    for ticket_id, history in by_ticket.items():
        rows.extend(_ticket_rows(ticket_id, collect(history), zone))
    return rows


def _ticket_rows(ticket_id: str, facts: Facts, zone: ZoneInfo) -> list[FactRow]:
    rows: list[FactRow] = []

    def add(
        kind: FactKind,
        at: datetime,
        where: tuple[str | None, str | None, str | None],
        value: float | None = None,
        no_show: bool = False,
    ) -> None:
        hour = int(_local_hour(at, zone).timestamp())
        day = at.astimezone(zone).date()
        rows.append(FactRow(ticket_id, len(rows), kind, *where, day, hour, value, no_show))

    for s in facts.segments:
        where = (s.service_id, s.counter_id, s.staff_id)
        add("segment", s.started_at, where, s.wait_s, s.end is SegmentEnd.NO_SHOW)
    for c in facts.completions:
        add("completion", c.completed_at, (c.service_id, c.counter_id, c.staff_id), c.service_s)
    for t in facts.tallies:
        add(t.kind, t.at, (t.service_id, t.counter_id, t.staff_id))
    return rows


def hour_key(hour_start: int, time_zone: str | TimeZoneName) -> datetime:
    """The :func:`core.kpi.local_hour_start` key of a stored ``hour_start``."""
    return _local_hour(datetime.fromtimestamp(hour_start, UTC), _zone(time_zone))


# -- the reference for filtered reports ---------------------------------------------


def reference(
    events: Iterable[EventBase],
    *,
    targets: Mapping[str, int | None],
    time_zone: str | TimeZoneName,
    key: GroupBy | None = None,
    filters: Filters | None = None,
) -> dict[GroupKey, KpiReport]:
    """KPIs of the facts passing ``filters``, per ``key`` (one group ``ALL`` when None).

    Without a key the single group is there even when empty, like :func:`core.kpi.compute`.
    """
    zone = _zone(time_zone)
    kept = _filtered(collect(events), filters or Filters(), zone)
    if key is None:
        return {ALL: _report(kept, targets, zone)}
    pick = {
        "hour": lambda w: _local_hour(w.at, zone),
        "day": lambda w: w.at.astimezone(zone).date(),
        "service": lambda w: w.service_id,
        "counter": lambda w: w.counter_id,
        "staff": lambda w: w.staff_id,
    }[key]
    return dict(_grouped(kept, pick, targets, zone))


def _filtered(facts: Facts, filters: Filters, zone: ZoneInfo) -> Facts:
    def keeps(w: _Where) -> bool:
        return filters.keeps(w.at.astimezone(zone).date(), w.service_id, w.counter_id, w.staff_id)

    return Facts(
        segments=[
            s
            for s in facts.segments
            if keeps(_Where(s.started_at, s.service_id, s.counter_id, s.staff_id))
        ],
        completions=[
            c
            for c in facts.completions
            if keeps(_Where(c.completed_at, c.service_id, c.counter_id, c.staff_id))
        ],
        pauses=[
            p for p in facts.pauses if keeps(_Where(p.started_at, None, p.counter_id, p.staff_id))
        ],
        tallies=[
            t for t in facts.tallies if keeps(_Where(t.at, t.service_id, t.counter_id, t.staff_id))
        ],
    )


# -- assembling SQL results ------------------------------------------------------------


@dataclass(slots=True)
class Counts:
    """The counters of one group as an SQL aggregate returns them."""

    issued: int = 0
    called: int = 0
    served: int = 0
    no_show: int = 0
    cancelled: int = 0
    abandoned: int = 0
    transfers: int = 0
    recalls: int = 0
    sla_eligible: int = 0
    sla_met: int = 0


@dataclass(slots=True)
class GroupParts:
    """Everything SQL (and the pause fold) found for one group."""

    counts: Counts
    waits: Sequence[float] = ()
    service_times: Sequence[float] = ()
    served_by_hour: dict[datetime, int] | None = None
    pauses: list[Pause] | None = None
    # (reason, seconds) of the group's pauses, when SQL read only those.
    pause_times: Sequence[tuple[str, float]] | None = None
    # Distributions SQL already found (ranks and exact sums), used instead of the values.
    wait: Distribution | None = None
    service: Distribution | None = None


def assemble(parts: GroupParts) -> KpiReport:
    """The report of one group, with the same rates and distributions as the reference."""
    c = parts.counts
    return KpiReport(
        issued=c.issued,
        called=c.called,
        served=c.served,
        no_show=c.no_show,
        cancelled=c.cancelled,
        abandoned=c.abandoned,
        transfers=c.transfers,
        recalls=c.recalls,
        wait=parts.wait or Distribution.of(parts.waits),
        service=parts.service or Distribution.of(parts.service_times),
        sla_eligible=c.sla_eligible,
        sla_met=c.sla_met,
        sla_attainment=_rate(c.sla_met, c.sla_eligible),
        no_show_rate=_rate(c.no_show, c.called),
        abandonment_rate=_rate(c.abandoned, c.issued),
        pause_seconds_by_reason=_sums(
            parts.pause_times
            if parts.pause_times is not None
            else ((p.reason, p.seconds) for p in parts.pauses or ())
        ),
        served_per_local_hour=dict(sorted((parts.served_by_hour or {}).items())),
    )


def pause_groups(
    pauses: Iterable[Pause],
    *,
    key: GroupBy | None,
    filters: Filters,
    time_zone: str | TimeZoneName,
) -> dict[GroupKey, list[Pause]]:
    """Pauses (from :func:`core.kpi.pauses`) kept by ``filters``, by group key."""
    zone = _zone(time_zone)
    groups: dict[GroupKey, list[Pause]] = {}
    for p in pauses:
        day = p.started_at.astimezone(zone).date()
        if filters.service_id is not None or not filters.keeps(day, None, p.counter_id, p.staff_id):
            continue
        found: GroupKey | None
        if key is None:
            found = ALL
        elif key == "hour":
            found = _local_hour(p.started_at, zone)
        elif key == "day":
            found = day
        elif key == "service":
            found = None
        else:
            found = p.counter_id if key == "counter" else p.staff_id
        if found is not None:
            groups.setdefault(found, []).append(p)
    return groups
