"""A branch report as plain data: what was asked, what the cache's SQL answered, and the
columns every view of it (table, CSV, PDF) shows.

:func:`build_report` asks the local cache (:mod:`sync.client.reports`), so reports
work offline. Days are branch-local and inclusive. Nothing here draws: the
window, the charts and the exports all read a :class:`ReportResult`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from core.kpi import GroupBy, KpiReport
from core.kpi_rows import ALL, Filters, GroupKey
from sync.client.cache import LocalCache
from sync.protocol import ReferenceData

GROUP_LABELS: dict[GroupBy, str] = {
    "hour": "Hour",
    "day": "Day",
    "service": "Service",
    "counter": "Counter",
    "staff": "Staff member",
}
HISTOGRAM_BINS = 12
_BIN_STEPS = (60, 120, 300, 600, 900, 1800, 3600)  # seconds: readable bin widths


class BadRequest(ValueError):  # noqa: N818 - reads as what it is
    """The report cannot be run as asked; ``str()`` is the sentence to show."""


@dataclass(frozen=True, slots=True)
class ReportRequest:
    first_day: date
    last_day: date
    group_by: GroupBy = "day"
    service_id: str | None = None
    counter_id: str | None = None
    staff_id: str | None = None

    def check(self) -> None:
        if self.last_day < self.first_day:
            raise BadRequest(
                f"The range ends ({self.last_day:%d %b %Y}) before it starts "
                f"({self.first_day:%d %b %Y}). Choose a 'To' day on or after the 'From' day."
            )

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    def filters(self) -> Filters:
        self.check()
        return Filters(
            self.first_day, self.last_day, self.service_id, self.counter_id, self.staff_id
        )


@dataclass(frozen=True, slots=True)
class Names:
    """How ids read in a report, and each service's SLA target."""

    branch: str
    time_zone: str
    services: dict[str, str] = field(default_factory=dict)
    counters: dict[str, str] = field(default_factory=dict)
    staff: dict[str, str] = field(default_factory=dict)
    targets: dict[str, int | None] = field(default_factory=dict)

    @classmethod
    def of(cls, branch: str, reference: ReferenceData) -> Names:
        return cls(
            branch=branch,
            time_zone=reference.branch.time_zone,
            services={s.id: f"{s.code} – {s.name}" for s in reference.services},
            counters={c.id: c.name for c in reference.counters},
            staff={s.id: s.display_name for s in reference.staff},
            targets={s.id: s.target_wait_s for s in reference.services},
        )

    def group(self, key: GroupKey, group_by: GroupBy) -> str:
        """The row label of a group key (an unknown id reads as itself)."""
        if isinstance(key, datetime):
            return key.strftime("%a %d %b %Y %H:00 (UTC%z)")
        if isinstance(key, date):
            return key.strftime("%a %d %b %Y")
        table = {"service": self.services, "counter": self.counters, "staff": self.staff}
        return table.get(group_by, {}).get(key, key or "All")

    def filter_text(self, request: ReportRequest) -> str:
        parts = [
            f"{what}: {names.get(wanted, wanted)}"
            for what, names, wanted in (
                ("Service", self.services, request.service_id),
                ("Counter", self.counters, request.counter_id),
                ("Staff member", self.staff, request.staff_id),
            )
            if wanted is not None
        ]
        return "; ".join(parts) if parts else "All services, counters and staff"


@dataclass(frozen=True, slots=True)
class Histogram:
    bin_s: int
    counts: list[int]  # the last bin holds every longer wait

    def label(self, index: int) -> str:
        """The bin's start in whole minutes (``5``), ``55+`` for the open last bin."""
        low = index * self.bin_s // 60
        return f"{low}+" if index == len(self.counts) - 1 else str(low)


@dataclass(frozen=True, slots=True)
class ReportResult:
    names: Names
    request: ReportRequest
    total: KpiReport
    groups: dict[GroupKey, KpiReport]
    arrivals_by_hour: list[float]  # per local hour of day 0..23, averaged over the days
    served_by_hour: list[float]
    sla_by_day: dict[date, float | None]
    histogram: Histogram
    generated_at: datetime

    @property
    def empty(self) -> bool:
        t = self.total
        return not (t.issued or t.called or t.served or t.cancelled or t.transfers)

    @property
    def range_text(self) -> str:
        r = self.request
        if r.first_day == r.last_day:
            return f"{r.first_day:%a %d %b %Y}"
        return f"{r.first_day:%d %b %Y} – {r.last_day:%d %b %Y}"

    def targets_shown(self) -> list[tuple[str, int]]:
        """The SLA targets the histogram marks: (service label, seconds), distinct seconds."""
        wanted = self.request.service_id
        found: dict[int, str] = {}
        for service_id, target in sorted(self.names.targets.items()):
            if target is None or (wanted is not None and service_id != wanted):
                continue
            label = self.names.services.get(service_id, service_id).split(" – ")[0]
            found[target] = f"{found[target]}, {label}" if target in found else label
        return [(label, seconds) for seconds, label in sorted(found.items())]

    def pause_reasons(self) -> list[str]:
        reasons = set(self.total.pause_seconds_by_reason)
        for report in self.groups.values():
            reasons |= set(report.pause_seconds_by_reason)
        return sorted(reasons)

    def columns(self) -> list[Column]:
        """The group table's columns: :data:`COLUMNS`, then one per pause reason."""
        extra = [
            Column(f"Paused: {reason} (s)", "seconds", _pause(reason))
            for reason in self.pause_reasons()
        ]
        return [*COLUMNS, *extra]

    def rows(self) -> list[tuple[str, str, KpiReport]]:
        """(key text, label, report) per group, then the total (key ``total``)."""
        by = self.request.group_by
        found = [(key_text(k), self.names.group(k, by), r) for k, r in self.groups.items()]
        return [*found, ("total", "Total", self.total)]


def key_text(key: GroupKey) -> str:
    return key.isoformat() if isinstance(key, date | datetime) else key


# -- columns ----------------------------------------------------------------------------

Kind = Literal["count", "seconds", "rate", "number"]


@dataclass(frozen=True, slots=True)
class Column:
    title: str  # with its unit, as the CSV header and the table heading show it
    kind: Kind
    value: Callable[[KpiReport], float | int | None]


def throughput_per_hour(report: KpiReport) -> float | None:
    """Served per hour with service: completions / local hours that had a completion."""
    hours = len(report.served_per_local_hour)
    return None if hours == 0 else report.served / hours


def _pause(reason: str) -> Callable[[KpiReport], float | int | None]:
    return lambda r: r.pause_seconds_by_reason.get(reason, 0.0)


COLUMNS: tuple[Column, ...] = (
    Column("Issued", "count", lambda r: r.issued),
    Column("Called", "count", lambda r: r.called),
    Column("Served", "count", lambda r: r.served),
    Column("No-shows", "count", lambda r: r.no_show),
    Column("Cancelled", "count", lambda r: r.cancelled),
    Column("Abandoned", "count", lambda r: r.abandoned),
    Column("Transfers", "count", lambda r: r.transfers),
    Column("Recalls", "count", lambda r: r.recalls),
    Column("Wait mean (s)", "seconds", lambda r: r.wait.mean),
    Column("Wait p50 (s)", "seconds", lambda r: r.wait.p50),
    Column("Wait p90 (s)", "seconds", lambda r: r.wait.p90),
    Column("Wait p95 (s)", "seconds", lambda r: r.wait.p95),
    Column("Wait max (s)", "seconds", lambda r: r.wait.max),
    Column("Service mean (s)", "seconds", lambda r: r.service.mean),
    Column("Service p50 (s)", "seconds", lambda r: r.service.p50),
    Column("Service p90 (s)", "seconds", lambda r: r.service.p90),
    Column("Service p95 (s)", "seconds", lambda r: r.service.p95),
    Column("Service max (s)", "seconds", lambda r: r.service.max),
    Column("SLA met", "count", lambda r: r.sla_met),
    Column("SLA eligible", "count", lambda r: r.sla_eligible),
    Column("SLA attainment", "rate", lambda r: r.sla_attainment),
    Column("No-show rate", "rate", lambda r: r.no_show_rate),
    Column("Abandonment rate", "rate", lambda r: r.abandonment_rate),
    Column("Throughput (served/h)", "number", throughput_per_hour),
    Column("Paused total (s)", "seconds", lambda r: sum(r.pause_seconds_by_reason.values())),
)


def minutes(seconds: float) -> str:
    """``0:30``, ``5:00``, ``1:02:00``: minutes and seconds, hours when there are any."""
    total = round(seconds)
    sign = "-" if total < 0 else ""
    hours, rest = divmod(abs(total), 3600)
    mins, secs = divmod(rest, 60)
    return f"{sign}{hours}:{mins:02d}:{secs:02d}" if hours else f"{sign}{mins}:{secs:02d}"


def shown(kind: Kind, value: float | None) -> str:
    """A figure as the screen and the PDF show it (``–`` when there is none)."""
    if value is None:
        return "–"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "seconds":
        return minutes(value)
    if kind == "rate":
        return f"{value * 100:.1f} %"
    return f"{value:,.1f}"


def key_figures(report: KpiReport) -> list[tuple[str, str]]:
    """The summary beside the charts (and at the top of the PDF)."""
    return [
        ("Tickets issued", shown("count", report.issued)),
        ("Served", shown("count", report.served)),
        ("No-shows", shown("count", report.no_show)),
        ("Cancelled", shown("count", report.cancelled)),
        ("Mean wait", shown("seconds", report.wait.mean)),
        ("Median wait (p50)", shown("seconds", report.wait.p50)),
        ("p90 wait", shown("seconds", report.wait.p90)),
        ("p95 wait", shown("seconds", report.wait.p95)),
        ("Longest wait", shown("seconds", report.wait.max)),
        ("Mean service time", shown("seconds", report.service.mean)),
        ("p90 service time", shown("seconds", report.service.p90)),
        ("SLA attainment", shown("rate", report.sla_attainment)),
        ("No-show rate", shown("rate", report.no_show_rate)),
        ("Abandonment rate", shown("rate", report.abandonment_rate)),
        ("Throughput (served/h)", shown("number", throughput_per_hour(report))),
        ("Transfers", shown("count", report.transfers)),
    ]


# -- asking the cache ---------------------------------------------------------------------


def bin_width(long_wait: float | None, bins: int = HISTOGRAM_BINS) -> int:
    """The smallest readable bin width whose ``bins - 1`` closed bins reach ``long_wait``.

    Given the p95 wait, the few longer waits share the open last bin instead of
    squeezing every other bin into the first few.
    """
    longest = max(0.0, long_wait or 0.0)
    for step in _BIN_STEPS:
        if longest < step * (bins - 1):
            return step
    return _BIN_STEPS[-1]


def build_report(
    cache: LocalCache, names: Names, request: ReportRequest, now: datetime
) -> ReportResult:
    """Run the report on the cache's SQL; raises :class:`BadRequest` for a bad range."""
    filters = request.filters()
    total = cache.report(filters=filters)[ALL]
    groups = cache.report(key=request.group_by, filters=filters)
    hourly = cache.report_counts(key="hour", filters=filters)
    arrivals, served = [0.0] * 24, [0.0] * 24
    for hour, in_hour in hourly.items():
        assert isinstance(hour, datetime)
        arrivals[hour.hour] += in_hour.issued
        served[hour.hour] += in_hour.served
    days = request.days
    daily = cache.report_counts(key="day", filters=filters)
    sla: dict[date, float | None] = {}
    day = request.first_day
    while day <= request.last_day:
        counts = daily.get(day)
        eligible = counts.sla_eligible if counts is not None else 0
        sla[day] = counts.sla_met / eligible if counts is not None and eligible else None
        day += timedelta(days=1)
    width = bin_width(total.wait.p95)
    histogram = Histogram(
        width, cache.wait_histogram(bin_s=width, bins=HISTOGRAM_BINS, filters=filters)
    )
    return ReportResult(
        names=names,
        request=request,
        total=total,
        groups=groups,
        arrivals_by_hour=[n / days for n in arrivals],
        served_by_hour=[n / days for n in served],
        sla_by_day=sla,
        histogram=histogram,
        generated_at=now,
    )
