"""The cache's hourly KPI counts stay those of its facts, and its reports the reference's."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.events import parse_event
from core.kpi import GroupBy
from core.kpi_rows import Filters, fact_rows, reference
from sync.client.cache import LocalCache
from sync.client.kpi_store import branch_hour_counts, hour_counts
from sync.client.store import HOUR_COUNTS
from tests.unit.sync.builders import ACCOUNTS, BRANCH, FakeService, at, open_cache
from tests.unit.sync_client.test_bulk_pull import ACTIONS, pull_all, run

COUNTED = "kind, service_id, counter_id, staff_id, local_day, hour_start, value, no_show"
HOURS = f"SELECT hour_start, service_id, counter_id, staff_id, local_day, {', '.join(HOUR_COUNTS)}"
KEYS: list[GroupBy | None] = [None, "hour", "day", "service", "counter", "staff"]


BRANCH_HOURS = f"SELECT hour_start, local_day, {', '.join(HOUR_COUNTS)} FROM kpi_branch_hours"


def stored_hours(target: LocalCache) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    conn = sqlite3.connect(target.path)
    try:
        return (
            sorted(conn.execute(f"{HOURS} FROM kpi_hours").fetchall()),
            sorted(conn.execute(BRANCH_HOURS).fetchall()),
        )
    finally:
        conn.close()


def counted_hours(
    target: LocalCache, targets: dict[str, int | None]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """``kpi_hours`` and ``kpi_branch_hours`` as counted afresh from the stored facts."""
    conn = sqlite3.connect(target.path)
    try:
        facts = conn.execute(f"SELECT {COUNTED} FROM kpi_facts").fetchall()
    finally:
        conn.close()
    counts = hour_counts(facts, targets)
    return (
        sorted((*k, *v) for k, v in counts.items()),
        sorted((*k, *v) for k, v in branch_hour_counts(counts).items()),
    )


def assert_reports_are_the_reference(target: LocalCache, service: FakeService) -> None:
    events = [parse_event(p.event) for p in service.log]
    live = service.state
    targets = {s.id: s.target_wait_s for s in live.services.values()}
    days = sorted({r.local_day for r in fact_rows(events, live.time_zone)})
    # The whole range, a service, and (when there is one) a range without the last day.
    ranges = [Filters(), Filters(service_id=ACCOUNTS), *[Filters(last_day=d) for d in days[-2:-1]]]
    for key in KEYS:
        for filters in ranges:
            expected = reference(events, targets=targets, time_zone=live.time_zone, key=key,
                                 filters=filters)  # fmt: skip
            found = target.report(key=key, filters=filters)
            assert found == expected, (key, filters)
    for filters in ranges:
        waits = [
            r.value
            for r in fact_rows(events, live.time_zone)
            if r.kind == "segment"
            and r.value is not None
            and filters.keeps(r.local_day, r.service_id, r.counter_id, r.staff_id)
        ]
        bins = [0] * 4
        for wait in waits:
            bins[min(max(int(wait // 120), 0), 3)] += 1
        assert target.wait_histogram(bin_s=120, bins=4, filters=filters) == bins


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=ACTIONS, after=ACTIONS, page_size=st.integers(1, 9), own_issues=st.integers(0, 3))
def test_hourly_counts_are_those_of_the_facts_after_any_history(
    before: list[tuple[str, int]],
    after: list[tuple[str, int]],
    page_size: int,
    own_issues: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        service = FakeService()
        run(service, before)
        console = open_cache(Path(tmp))
        pull_all(service, console, page_size)
        for i in range(own_issues):  # rewritten again when the pull confirms them
            console.issue_ticket(ACCOUNTS, at=at(200 + i))
        run(service, after, start=300)
        service.sync(console)
        pull_all(service, console, page_size)
        targets = {s.id: s.target_wait_s for s in service.state.services.values()}

        assert stored_hours(console) == counted_hours(console, targets)
        entity, branch = stored_hours(console)
        assert all(row[5] > 0 for row in entity)  # no emptied hour is left
        assert all(row[2] > 0 for row in branch)
        assert_reports_are_the_reference(console, service)
        console.close()
        reopened = LocalCache.open(console.path, BRANCH)
        assert stored_hours(reopened) == counted_hours(reopened, targets)
        reopened.close()


def test_reports_of_some_days_of_a_longer_history_are_the_reference() -> None:
    """A range that leaves days out checks each fact's day; one that holds every
    stored day need not, and both answer as the reference does."""
    actions = [("open", 0), ("open", 1)] + [("issue", n) for n in range(12)]
    actions += [(kind, n) for n in range(12) for kind in ("call_next", "start", "complete")]
    with tempfile.TemporaryDirectory() as tmp:
        service = FakeService()
        run(service, actions)
        run(service, actions, start=24 * 60)  # the next day
        run(service, actions, start=2 * 24 * 60)  # and the one after
        console = open_cache(Path(tmp))
        pull_all(service, console, 500)
        events = [parse_event(p.event) for p in service.log]
        live = service.state
        targets = {s.id: s.target_wait_s for s in live.services.values()}
        days = sorted({r.local_day for r in fact_rows(events, live.time_zone)})
        assert len(days) == 3
        for filters in (
            Filters(first_day=days[0], last_day=days[-1]),
            Filters(first_day=days[1]),
            Filters(last_day=days[1]),
            Filters(first_day=days[1], last_day=days[1]),
        ):
            expected = reference(events, targets=targets, time_zone=live.time_zone, filters=filters)
            assert console.report(filters=filters) == expected, filters
            waits = [
                r.value
                for r in fact_rows(events, live.time_zone)
                if r.kind == "segment"
                and r.value is not None
                and filters.keeps(r.local_day, None, None, None)
            ]
            assert sum(console.wait_histogram(bin_s=60, bins=5, filters=filters)) == len(waits)
        console.close()
