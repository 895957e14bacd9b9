"""KPI definitions and their reference implementation, which every SQL version must match.

Input: accepted events in branch order, SLA targets per service id (seconds; None or
missing = no target) and the branch's IANA time zone. Durations are real elapsed
seconds between ``occurred_at`` instants (so a DST jump adds or removes nothing);
negative durations from skewed device clocks are kept as they are, not clamped.
Events of a ticket whose ``ticket.issued`` is not in the input are ignored.

- Queue segment: starts at ``ticket.issued`` (in the issue service) or
  ``ticket.transferred`` (in the target service); ends at the next transfer or at the
  completion, no-show or cancellation. Park and return stay in the same segment.
- wait: the segment's first ``ticket.called`` minus its start. Recalls and calls after a
  return do not change it; a segment never called has no wait.
- service time: ``ticket.completed`` minus the ticket's latest ``ticket.service_started``
  before it.
- counts: issued; called = segments with a call; served = completions (any outcome);
  no_show; cancelled; abandoned = cancelled tickets never called in any segment;
  transfers; recalls.
- no_show_rate = no_show / called; abandonment_rate = abandoned / issued;
  sla_attainment = sla_met / sla_eligible, where eligible are the called segments whose
  service has a target and met are those with wait <= target. A zero denominator is None.
- Distributions: count, mean, max, and p50/p90/p95 by nearest rank: the value at 1-based
  rank ceil(p * N / 100) of the ascending values, in exact arithmetic (in SQL with an
  integer p: (p * N + 99) / 100 in integer division, not a float ceil). None when empty.
- pause_seconds_by_reason: ``counter.paused`` to that counter's next ``counter.resumed``
  or ``counter.closed``. A pause open at the end counts up to ``until`` (at least 0
  seconds) when it is given, else not at all.
- served_per_local_hour: completions by the start of their branch-local hour, as an aware
  datetime carrying the branch's UTC offset then. Keys are instants: the repeated autumn
  hour gives two keys, the skipped spring hour none (PostgreSQL: ``date_trunc('hour', t, tz)``).

:func:`compute_grouped` gives each fact to exactly one group, so group counts add up to
the totals; a fact with no value for the key (e.g. an uncalled segment has no counter) is
left out of that grouping. Hour and day are branch-local; staff is the event's actor.

=============================  ===============  ==============  ============================
fact                           hour / day       service         counter / staff
=============================  ===============  ==============  ============================
issued, abandoned              issue time       issue service   none
segment: called, wait, SLA,    segment start    its service     counter and actor of the
no-show                                                         segment's first call
completion, service time       completion time  its segment's   completing counter and actor
recall                         recall time      its segment's   recalling counter and actor
transfer                       transfer time    service left    counter left (if any), actor
cancellation                   cancel time      its segment's   none
pause                          pause start      none            paused counter and actor
=============================  ===============  ==============  ============================
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from fractions import Fraction
from typing import Literal, TypeVar, overload
from zoneinfo import ZoneInfo

from core.errors import InvalidValue
from core.events import EventBase
from core.kpi_facts import (
    Completion,
    Facts,
    Pause,
    Segment,
    SegmentEnd,
    collect,
    elapsed_s,
)
from core.values import TimeZoneName

__all__ = [
    "Completion",
    "Distribution",
    "GroupBy",
    "KpiReport",
    "Pause",
    "Segment",
    "SegmentEnd",
    "completions",
    "compute",
    "compute_grouped",
    "elapsed_s",
    "local_hour_start",
    "pauses",
    "percentile",
    "segments",
]

GroupBy = Literal["hour", "day", "service", "counter", "staff"]
_K = TypeVar("_K", datetime, date, str)


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of ascending values."""
    rank = nearest_rank(p, len(sorted_values))
    return sorted_values[rank - 1] if sorted_values else None


def nearest_rank(p: float, n: int) -> int:
    """The 1-based rank of the nearest-rank ``p``-th percentile (0 < p <= 100) of n values."""
    if not 0 < p <= 100:
        raise InvalidValue("p", f"a percentile must be above 0 and at most 100, not {p}")
    # Exact: in floats 7 / 100 * 100 is 7.000000000000001, whose ceiling is rank 8.
    return math.ceil(Fraction(p) * n / 100)


@dataclass(frozen=True, slots=True)
class Distribution:
    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    max: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        return cls.of_sorted(sorted(values))

    @classmethod
    def of_sorted(cls, ordered: Sequence[float]) -> Distribution:
        """:meth:`of` for values already in ascending order."""
        if not ordered:
            return cls(0, None, None, None, None, None)
        return cls(
            count=len(ordered),
            mean=math.fsum(ordered) / len(ordered),
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p95=percentile(ordered, 95),
            max=ordered[-1],
        )


@dataclass(frozen=True, slots=True)
class KpiReport:
    issued: int
    called: int  # segments with at least one call
    served: int  # completions, any outcome
    no_show: int
    cancelled: int
    abandoned: int  # cancelled without ever having been called
    transfers: int
    recalls: int
    wait: Distribution  # seconds, one value per called segment
    service: Distribution  # seconds, one value per completion
    sla_eligible: int  # called segments whose service has a target
    sla_met: int  # of those, called within the target
    sla_attainment: float | None
    no_show_rate: float | None
    abandonment_rate: float | None
    pause_seconds_by_reason: dict[str, float]
    served_per_local_hour: dict[datetime, int]


def local_hour_start(instant: datetime, time_zone: str | TimeZoneName) -> datetime:
    """The start of the branch-local hour holding ``instant``, with that hour's UTC offset."""
    return _local_hour(instant, _zone(time_zone))


def _local_hour(instant: datetime, zone: ZoneInfo) -> datetime:
    local = instant.astimezone(zone)
    start = local.replace(minute=0, second=0, microsecond=0)  # keeps ``fold`` for autumn
    offset = start.utcoffset()
    assert offset is not None  # a ZoneInfo always knows its offset
    # A fixed offset, because aware datetimes sharing a ZoneInfo compare as wall-clock
    # times: the two 02:00 hours of an autumn night would collide as dict keys.
    return start.replace(tzinfo=timezone(offset))


def segments(events: Iterable[EventBase]) -> list[Segment]:
    """Every queue segment, in the order they started."""
    return collect(events).segments


def completions(events: Iterable[EventBase]) -> list[Completion]:
    """Every completion with its service time, in branch order."""
    return collect(events).completions


def pauses(events: Iterable[EventBase], *, until: datetime | None = None) -> list[Pause]:
    """Every ended pause (and, with ``until``, every open one), in the order they ended."""
    return collect(events, until).pauses


def compute(
    events: Iterable[EventBase],
    *,
    targets: Mapping[str, int | None],
    time_zone: str | TimeZoneName,
    until: datetime | None = None,
) -> KpiReport:
    """The KPIs of all ``events`` (see the module docstring for every definition)."""
    return _report(collect(events, until), targets, _zone(time_zone))


@overload
def compute_grouped(
    events: Iterable[EventBase],
    *,
    key: Literal["hour"],
    targets: Mapping[str, int | None],
    time_zone: str | TimeZoneName,
    until: datetime | None = None,
) -> dict[datetime, KpiReport]: ...
@overload
def compute_grouped(
    events: Iterable[EventBase],
    *,
    key: Literal["day"],
    targets: Mapping[str, int | None],
    time_zone: str | TimeZoneName,
    until: datetime | None = None,
) -> dict[date, KpiReport]: ...
@overload
def compute_grouped(
    events: Iterable[EventBase],
    *,
    key: Literal["service", "counter", "staff"],
    targets: Mapping[str, int | None],
    time_zone: str | TimeZoneName,
    until: datetime | None = None,
) -> dict[str, KpiReport]: ...
def compute_grouped(
    events: Iterable[EventBase],
    *,
    key: GroupBy,
    targets: Mapping[str, int | None],
    time_zone: str | TimeZoneName,
    until: datetime | None = None,
) -> dict[datetime, KpiReport] | dict[date, KpiReport] | dict[str, KpiReport]:
    """KPIs per branch-local hour or day, service, counter or staff member, sorted by key.

    Hour keys are those of :func:`local_hour_start`; day keys are local dates. Which
    group a fact belongs to is in the module docstring's table.
    """
    zone = _zone(time_zone)
    facts = collect(events, until)
    if key == "hour":
        return _grouped(facts, lambda w: _local_hour(w.at, zone), targets, zone)
    if key == "day":
        return _grouped(facts, lambda w: w.at.astimezone(zone).date(), targets, zone)
    if key == "service":
        return _grouped(facts, lambda w: w.service_id, targets, zone)
    if key == "counter":
        return _grouped(facts, lambda w: w.counter_id, targets, zone)
    if key == "staff":
        return _grouped(facts, lambda w: w.staff_id, targets, zone)
    raise InvalidValue("key", f"{key!r} is not one of hour, day, service, counter, staff")


@dataclass(frozen=True, slots=True)
class _Where:
    at: datetime
    service_id: str | None
    counter_id: str | None
    staff_id: str | None


def _grouped(
    facts: Facts,
    pick: Callable[[_Where], _K | None],
    targets: Mapping[str, int | None],
    zone: ZoneInfo,
) -> dict[_K, KpiReport]:
    groups: dict[_K, Facts] = {}

    def group(where: _Where) -> Facts | None:
        found = pick(where)
        return None if found is None else groups.setdefault(found, Facts())

    for s in facts.segments:
        if (g := group(_Where(s.started_at, s.service_id, s.counter_id, s.staff_id))) is not None:
            g.segments.append(s)
    for c in facts.completions:
        if (g := group(_Where(c.completed_at, c.service_id, c.counter_id, c.staff_id))) is not None:
            g.completions.append(c)
    for p in facts.pauses:
        if (g := group(_Where(p.started_at, None, p.counter_id, p.staff_id))) is not None:
            g.pauses.append(p)
    for t in facts.tallies:
        if (g := group(_Where(t.at, t.service_id, t.counter_id, t.staff_id))) is not None:
            g.tallies.append(t)
    return {k: _report(groups[k], targets, zone) for k in sorted(groups)}


def _report(facts: Facts, targets: Mapping[str, int | None], zone: ZoneInfo) -> KpiReport:
    tally = Counter(t.kind for t in facts.tallies)
    called = [(s.service_id, s.wait_s) for s in facts.segments if s.wait_s is not None]
    eligible = [
        (wait, target) for service, wait in called if (target := targets.get(service)) is not None
    ]
    met = sum(1 for wait, target in eligible if wait <= target)
    no_show = sum(1 for s in facts.segments if s.end is SegmentEnd.NO_SHOW)
    return KpiReport(
        issued=tally["issued"],
        called=len(called),
        served=len(facts.completions),
        no_show=no_show,
        cancelled=tally["cancelled"],
        abandoned=tally["abandoned"],
        transfers=tally["transfer"],
        recalls=tally["recall"],
        wait=Distribution.of(wait for _, wait in called),
        service=Distribution.of(c.service_s for c in facts.completions if c.service_s is not None),
        sla_eligible=len(eligible),
        sla_met=met,
        sla_attainment=_rate(met, len(eligible)),
        no_show_rate=_rate(no_show, len(called)),
        abandonment_rate=_rate(tally["abandoned"], tally["issued"]),
        pause_seconds_by_reason=_sums((p.reason, p.seconds) for p in facts.pauses),
        served_per_local_hour=dict(
            sorted(Counter(_local_hour(c.completed_at, zone) for c in facts.completions).items())
        ),
    )


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _sums(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    by_key: dict[str, list[float]] = {}
    for k, value in pairs:
        by_key.setdefault(k, []).append(value)
    return {k: math.fsum(values) for k, values in sorted(by_key.items())}


def _zone(time_zone: str | TimeZoneName) -> ZoneInfo:
    return (time_zone if isinstance(time_zone, TimeZoneName) else TimeZoneName(time_zone)).zone
