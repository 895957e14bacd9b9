"""The console's reads beyond queues and counters: parked tickets and reference data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core import commands as cmd
from sync.client import migrations
from sync.client.cache import LocalCache
from tests.unit.sync.builders import (
    ACCOUNTS,
    BRANCH,
    C1,
    C2,
    LOANS,
    FakeService,
    at,
    open_cache,
    reference,
    view,
)


def park_one(cache: LocalCache, counter_id: str, service_id: str, minute: float) -> str:
    """Issue a ticket, call it to ``counter_id`` and park it; returns its id."""
    issued = cache.issue_ticket(service_id, at=at(minute))
    cache.execute(
        cmd.CallTicket(at=at(minute + 1), counter_id=counter_id, ticket_id=issued.ticket_id)
    )
    cache.execute(cmd.Park(at=at(minute + 2), ticket_id=issued.ticket_id))
    return issued.ticket_id


def open_both(cache: LocalCache) -> None:
    for counter_id in (C1, C2):
        cache.execute(cmd.OpenCounter(at=at(0), counter_id=counter_id))


def test_parked_lists_each_ticket_with_the_counter_that_parked_it(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    open_both(cache)
    first = park_one(cache, C1, ACCOUNTS, 1)
    second = park_one(cache, C2, LOANS, 5)
    third = park_one(cache, C1, LOANS, 10)

    assert [(t.id, t.parked_by) for t in cache.parked()] == [
        (first, C1),
        (second, C2),
        (third, C1),
    ]
    assert [t.id for t in cache.parked(C1)] == [first, third]
    assert [t.id for t in cache.parked(C2)] == [second]
    assert all(t.status == "parked" and t.counter_id is None for t in cache.parked())


def test_a_returned_or_cancelled_ticket_is_no_longer_parked(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    open_both(cache)
    returned = park_one(cache, C1, ACCOUNTS, 1)
    cancelled = park_one(cache, C1, ACCOUNTS, 5)
    kept = park_one(cache, C1, ACCOUNTS, 10)

    cache.execute(cmd.ReturnTicket(at=at(20), ticket_id=returned))
    cache.execute(cmd.Cancel(at=at(21), ticket_id=cancelled))

    assert [t.id for t in cache.parked(C1)] == [kept]
    assert view(cache, returned).parked_by is None
    assert view(cache, cancelled).parked_by is None


def test_parked_tickets_survive_a_reopen_and_a_sync(tmp_path: Path) -> None:
    service = FakeService()
    cache = open_cache(tmp_path)
    open_both(cache)
    parked = park_one(cache, C2, ACCOUNTS, 1)
    assert service.sync(cache) == []
    cache.close()

    reopened = LocalCache.open(tmp_path / "cache.sqlite3", BRANCH)
    assert reopened.repaired is False
    assert [(t.id, t.parked_by, t.unsynced) for t in reopened.parked()] == [(parked, C2, False)]
    other = open_cache(tmp_path, "other")  # another console learns it from the log
    service.sync(other)
    assert [(t.id, t.parked_by) for t in other.parked(C2)] == [(parked, C2)]
    assert other.projection_hash() == reopened.projection_hash()


def test_a_file_from_before_parked_by_is_filled_from_its_log(tmp_path: Path) -> None:
    service = FakeService()
    cache = open_cache(tmp_path)
    open_both(cache)
    confirmed = park_one(cache, C1, ACCOUNTS, 1)
    service.sync(cache)  # its park is in the confirmed log now
    pending = park_one(cache, C2, LOANS, 5)  # this one only in the outbox
    cache.close()
    conn = sqlite3.connect(tmp_path / "cache.sqlite3")
    conn.execute("ALTER TABLE tickets DROP COLUMN parked_by")  # the version 1 schema
    conn.execute("DROP TABLE snapshot")
    conn.executescript(  # without what version 4 adds
        "DROP INDEX ix_events_ticket_id; ALTER TABLE events DROP COLUMN ticket_id;"
        " DROP TABLE kpi_facts; DROP TABLE kpi_hours; DROP TABLE kpi_branch_hours;"
        " DROP TABLE kpi_meta; DROP TABLE kpi_dirty;"
    )
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()

    upgraded = LocalCache.open(tmp_path / "cache.sqlite3", BRANCH)

    assert migrations.file_version(upgraded.path) == migrations.latest_version()
    assert upgraded.repaired is False  # the step filled the column as the log says
    assert [(t.id, t.parked_by) for t in upgraded.parked()] == [(confirmed, C1), (pending, C2)]


def test_reference_is_what_the_cache_was_given(tmp_path: Path) -> None:
    empty = LocalCache.open(tmp_path / "empty.sqlite3", BRANCH)
    assert empty.reference() is None
    cache = open_cache(tmp_path)
    ref = cache.reference()
    assert ref is not None
    assert ref == reference()
    newer = reference(version="v2", pause_reasons=["Break", "Training"])
    cache.apply_reference(newer)
    assert cache.reference() == newer
    cache.close()
    assert LocalCache.open(tmp_path / "cache.sqlite3", BRANCH).reference() == newer
