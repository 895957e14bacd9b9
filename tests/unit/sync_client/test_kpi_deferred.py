"""KPI facts a bulk pull leaves for later end exactly as if they had been written at once."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.client import kpi_store
from sync.client.cache import LocalCache
from tests.unit.sync.builders import ACCOUNTS, BRANCH, FakeService, at, open_cache
from tests.unit.sync_client.test_bulk_pull import (
    ACTIONS,
    FACTS,
    expected_facts,
    pull_all,
    rows,
    run,
)
from tests.unit.sync_client.test_kpi_hours import (
    assert_reports_are_the_reference,
    counted_hours,
    stored_hours,
)

LISTED = "SELECT ticket_id FROM kpi_dirty ORDER BY ticket_id"


def _targets(service: FakeService) -> dict[str, int | None]:
    return {s.id: s.target_wait_s for s in service.state.services.values()}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=ACTIONS,
    after=ACTIONS,
    page_size=st.integers(1, 12),
    own_issues=st.integers(0, 3),
    defer_over=st.integers(0, 4),
    limit=st.none() | st.integers(1, 5),
    reopen=st.booleans(),
)
def test_deferred_facts_end_as_if_written_at_once(
    before: list[tuple[str, int]],
    after: list[tuple[str, int]],
    page_size: int,
    own_issues: int,
    defer_over: int,
    limit: int | None,
    reopen: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(kpi_store, "DEFER_OVER", defer_over)
        service = FakeService()
        run(service, before)
        console = open_cache(Path(tmp))
        pull_all(service, console, page_size)
        for i in range(own_issues):  # a command on a ticket may find it listed, or not
            console.issue_ticket(ACCOUNTS, at=at(200 + i))
        run(service, after, start=300)
        service.sync(console)
        pull_all(service, console, page_size)
        if reopen:  # the list is in the file: a crash or a restart loses none of it
            console.close()
            console = LocalCache.open(console.path, BRANCH)

        left = console.flush_facts(limit)
        while left:
            still = console.flush_facts(limit)
            assert still < left  # every chunk makes progress
            left = still
        assert rows(console, LISTED) == []
        assert rows(console, FACTS) == expected_facts(service)
        assert stored_hours(console) == counted_hours(console, _targets(service))
        console.close()


def test_a_bulk_page_lists_its_tickets_and_a_report_writes_their_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kpi_store, "DEFER_OVER", 2)
    service = FakeService()
    run(
        service, [("issue", 1)] * 5 + [("open", 0), ("call_next", 0), ("start", 0), ("complete", 0)]
    )
    console = open_cache(tmp_path)
    pull_all(service, console, 100)
    # The queue is there at once; the facts of the five tickets are listed for later.
    assert len(console.waiting(ACCOUNTS)) == 4
    assert len(rows(console, LISTED)) == 5
    assert rows(console, FACTS) == []
    # A report writes them first, so it is never behind the queue.
    assert_reports_are_the_reference(console, service)
    assert rows(console, LISTED) == []
    assert rows(console, FACTS) == expected_facts(service)
    assert console.flush_facts() == 0
    console.close()


def test_a_small_write_keeps_its_facts_at_once(tmp_path: Path) -> None:
    service = FakeService()
    run(service, [("issue", 1), ("issue", 2)])
    console = open_cache(tmp_path)
    pull_all(service, console, 100)
    assert rows(console, LISTED) == []
    assert rows(console, FACTS) == expected_facts(service)
    console.close()


def test_a_local_command_lists_its_ticket_and_a_report_writes_its_facts(tmp_path: Path) -> None:
    service = FakeService()
    run(service, [("issue", 1), ("issue", 2)])
    console = open_cache(tmp_path)
    pull_all(service, console, 100)
    assert rows(console, LISTED) == []
    issued = console.issue_ticket(ACCOUNTS, at=at(200))
    # The command only lists its ticket: the key press does not wait for report upkeep.
    assert rows(console, LISTED) == [(issued.ticket_id,)]
    assert [r for r in rows(console, FACTS) if r[0] == issued.ticket_id] == []
    console.report()  # a report writes the listed facts first
    assert rows(console, LISTED) == []
    written = [r for r in rows(console, FACTS) if r[0] == issued.ticket_id]
    assert sorted(r[2] for r in written) == ["issued", "segment"]
    service.sync(console)
    pull_all(service, console, 100)
    assert rows(console, FACTS) == expected_facts(service)
    assert console.flush_facts() == 0
    console.close()
