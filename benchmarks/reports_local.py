"""How long the console takes for a branch's report of a whole year, from its cache.

A branch's cache file (:class:`sync.client.cache.LocalCache`, a real SQLite file in a
temporary directory) holds the KPI fact rows of 1,000,000 tickets spread over 2025
(100,000 with ``--quick``), written with ``executemany`` straight into ``kpi_facts``
(not through commands: generating a year of events would dwarf the measurement), then
their hourly counts (``kpi_hours``) counted as the cache's writes keep them. The
mix is a busy branch's: three services (two with an SLA target), six counters and
staff, about 4 % cancelled (half of them before a call), 5 % no-shows, 3 % transferred
once, 2 % recalled, waits of a few minutes to an hour, service of 2 to 20 minutes.

value = seconds for the full report the console's report window runs for the year
(:func:`desktop.report_data.build_report`: the totals, the groups by day, the hourly
and daily counts for the charts and the wait histogram), median of 3 runs;
baseline = seconds for one hand-written SQL aggregate over the same table in the same
run (``count(*)`` and ``avg(value)`` of the called segments of the year, through
``sqlite3``), median of 3; ratio = value / baseline.
``ok`` when value <= 1.0 s and ratio <= 3.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from _report import parse_args, report
from sqlalchemy import create_engine

from desktop.report_data import Names, ReportRequest, build_report
from sync.client import kpi_store
from sync.client.cache import LocalCache
from sync.protocol import (
    BranchRef,
    CounterRef,
    ReferenceData,
    ServiceRef,
    StaffRef,
)

ZONE: Final = "Europe/Berlin"
YEAR: Final = 2025
TARGET_S: Final = 1.0
TARGET_RATIO: Final = 3.0
RUNS: Final = 3

BRANCH = str(uuid.UUID(int=1))
SERVICES = [(str(uuid.UUID(int=100 + i)), code, target) for i, (code, target) in
            enumerate((("A", 600), ("B", 900), ("C", None)))]  # fmt: skip
COUNTERS = [str(uuid.UUID(int=200 + i)) for i in range(6)]
STAFF = [str(uuid.UUID(int=300 + i)) for i in range(6)]


def reference() -> ReferenceData:
    return ReferenceData(
        version="bench",
        branch=BranchRef(id=BRANCH, name="Benchmark branch", time_zone=ZONE),
        services=[ServiceRef(id=s, code=c, name=c, target_wait_s=t) for s, c, t in SERVICES],
        counters=[
            CounterRef(id=c, name=f"Counter {i + 1}", work_profile=[s for s, _, _ in SERVICES])
            for i, c in enumerate(COUNTERS)
        ],
        staff=[StaffRef(id=s, display_name=f"Staff {i + 1}") for i, s in enumerate(STAFF)],
        pause_reasons=["Break"],
        permissions=["reports.branch"],
    )


def fact_rows(tickets: int, seed: int = 2025) -> list[tuple[object, ...]]:
    """The ``kpi_facts`` rows of ``tickets`` tickets over the year, bucketed in ``ZONE``."""
    rng = random.Random(seed)
    zone = ZoneInfo(ZONE)
    days = [
        date(YEAR, 1, 1) + timedelta(days=d)
        for d in range((date(YEAR + 1, 1, 1) - date(YEAR, 1, 1)).days)
    ]
    hour_start: dict[tuple[int, int], int] = {}
    for d, day in enumerate(days):
        for hour in range(8, 19):
            local = datetime(day.year, day.month, day.day, hour, tzinfo=zone)
            hour_start[d, hour] = int(local.astimezone(UTC).timestamp())
    iso = [d.isoformat() for d in days]
    rows: list[tuple[object, ...]] = []
    add = rows.append
    for n in range(tickets):
        ticket = f"t{n:08d}"
        d = rng.randrange(len(days))
        hour = rng.randrange(8, 18)
        day = iso[d]
        service, _, _ = SERVICES[rng.randrange(3)]
        k = rng.randrange(6)
        counter, staff = COUNTERS[k], STAFF[k]
        ordinal = 0

        def fact(
            kind: str,
            svc: str | None,
            ctr: str | None,
            stf: str | None,
            value: float | None = None,
            no_show: int = 0,
            later: int = 0,
            ticket: str = ticket,
            d: int = d,
            day: str = day,
            hour: int = hour,
        ) -> None:
            nonlocal ordinal
            at = min(hour + later, 18)
            add((ticket, ordinal, kind, svc, ctr, stf, day, hour_start[d, at], value, no_show))
            ordinal += 1

        fact("issued", service, None, None)
        fate = rng.random()
        if fate < 0.02:  # cancelled before a call: abandoned
            fact("segment", service, None, None)
            fact("cancelled", service, None, None)
            fact("abandoned", service, None, None)
            continue
        wait = rng.uniform(20, 3600) if rng.random() < 0.1 else rng.uniform(20, 900)
        later = int(wait // 3600)
        if fate < 0.07:
            fact("segment", service, counter, staff, round(wait, 3), 1)
            continue
        if fate < 0.09:
            fact("segment", service, counter, staff, round(wait, 3))
            fact("cancelled", service, None, None, later=later)
            continue
        fact("segment", service, counter, staff, round(wait, 3))
        if fate < 0.11:
            fact("recall", service, counter, staff, later=later)
        if fate > 0.97:
            fact("transfer", service, counter, staff, later=later)
            service = SERVICES[
                (SERVICES.index(next(s for s in SERVICES if s[0] == service)) + 1) % 3
            ][0]
            fact("segment", service, counter, staff, round(rng.uniform(10, 600), 3), later=later)
        fact("completion", service, counter, staff, round(rng.uniform(120, 1200), 3), later=later)
    return rows


def fill(path: Path, tickets: int) -> LocalCache:
    cache = LocalCache.open(path, BRANCH)
    cache.apply_reference(reference())
    cache.close()
    rows = fact_rows(tickets)
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany("INSERT INTO kpi_facts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("DELETE FROM kpi_meta")
        conn.execute("INSERT INTO kpi_meta (id, time_zone) VALUES (1, ?)", (ZONE,))
    conn.close()
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as counting:
        kpi_store.rebuild_hours(counting, {s: t for s, _, t in SERVICES})
        counting.exec_driver_sql("ANALYZE")
    engine.dispose()
    return LocalCache.open(path, BRANCH)


def baseline(path: Path) -> float:
    conn = sqlite3.connect(path)
    try:
        started = time.perf_counter()
        conn.execute(
            "SELECT count(*), avg(value) FROM kpi_facts WHERE kind = 'segment' "
            "AND value IS NOT NULL AND local_day BETWEEN ? AND ?",
            (f"{YEAR}-01-01", f"{YEAR}-12-31"),
        ).fetchone()
        return time.perf_counter() - started
    finally:
        conn.close()


def main() -> None:
    args = parse_args(__doc__ or "")
    tickets = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="qd-reports-local-") as folder:
        path = Path(folder) / "cache.sqlite3"
        started = time.perf_counter()
        cache = fill(path, tickets)
        print(
            f"filled {tickets:,} tickets in {time.perf_counter() - started:.1f} s", file=sys.stderr
        )
        try:
            names = Names.of("Benchmark branch", reference())
            request = ReportRequest(date(YEAR, 1, 1), date(YEAR, 12, 31), "day")
            now = datetime.now(UTC)
            baselines, values = [], []
            for _ in range(RUNS):
                baselines.append(baseline(path))
                started = time.perf_counter()
                result = build_report(cache, names, request, now)
                values.append(time.perf_counter() - started)
            assert result.total.issued == tickets, result.total.issued
        finally:
            cache.close()
    value, base = statistics.median(values), statistics.median(baselines)
    ratio = value / base
    report(
        "reports_local",
        value=value,
        unit="s",
        baseline=base,
        ratio=ratio,
        target=f"<= {TARGET_S} s and ratio <= {TARGET_RATIO}",
        ok=value <= TARGET_S and ratio <= TARGET_RATIO,
        tickets=tickets,
    )


if __name__ == "__main__":
    main()
