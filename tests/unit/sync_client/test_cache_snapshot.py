"""The cache's snapshot of the confirmed state: used on open only when it is what a replay gives."""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path

import pytest

from core import commands as cmd
from core import state_codec
from core.events import Customer
from core.machine import replay
from core.values import Channel, PriorityClass, TicketNumber
from sync.client import base, snapshot
from sync.client.cache import LocalCache
from sync.protocol import ServiceRef
from tests.unit.core.builders import new_branch
from tests.unit.core.builders import snapshot as fields_of
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
)
from tests.unit.sync.test_replica import busy_desk


@pytest.fixture(autouse=True)
def snapshot_often(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "SNAPSHOT_EVERY", 3)


def busy_service(tickets: int = 6) -> FakeService:
    """A service whose log has tickets in every state, issued by another client."""
    service = FakeService()
    service.run(cmd.OpenCounter(at=at(0), counter_id=C1))
    service.run(cmd.OpenCounter(at=at(0), counter_id=C2))
    customer = Customer(name="Ada", email="ada@example.org")
    for n in range(tickets):
        service.run(
            cmd.IssueTicket(
                at=at(n + 1),
                service_id=ACCOUNTS if n % 3 else LOANS,
                number=TicketNumber("A" if n % 3 else "L", n + 1),
                priority=PriorityClass.PRIORITY if n == 4 else PriorityClass.NORMAL,
                customer=customer if n == 2 else None,
            )
        )
    service.run(
        cmd.IssueTicket(
            at=at(10),
            service_id=ACCOUNTS,
            number=TicketNumber("A", 50),
            channel=Channel.APPOINTMENT,
            appointment_at=at(40),
        )
    )
    called = service.run(cmd.CallNext(at=at(11), counter_id=C1))[0]
    service.run(cmd.StartService(at=at(12), ticket_id=getattr(called, "ticket_id", "")))
    parked = service.run(cmd.CallNext(at=at(13), counter_id=C2))[0]
    service.run(cmd.Park(at=at(14), ticket_id=getattr(parked, "ticket_id", "")))
    return service


def replayed(path: Path) -> LocalCache:
    """A copy of the cache file without its snapshot, opened: the state a replay gives."""
    copy = path.with_name(f"replayed-{path.name}")
    source, target = sqlite3.connect(path), sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.execute("DELETE FROM snapshot")
    target.commit()
    target.close()
    cache = LocalCache.open(copy, BRANCH)
    assert not cache.snapshot_used
    return cache


def assert_same_memory(a: LocalCache, b: LocalCache) -> None:
    assert a._replica.base == b._replica.base
    assert a._replica.live == b._replica.live
    assert a._replica.skipped == b._replica.skipped
    assert a.projection_hash() == b.projection_hash()


def edit_snapshot(path: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def test_the_body_gives_back_the_state_it_was_made_from() -> None:
    desk = busy_desk()
    decoded = snapshot.decode(snapshot.encode(desk.state))
    assert decoded == desk.state
    assert fields_of(decoded) == fields_of(replay(new_branch(), desk.log))


def test_a_reopened_cache_starts_from_its_snapshot_and_equals_a_replay(tmp_path: Path) -> None:
    service = busy_service()
    cache = open_cache(tmp_path)
    service.sync(cache)
    cache.issue_ticket(ACCOUNTS, at=at(20))  # an own pending event on top
    cache.close()

    reopened = LocalCache.open(cache.path, BRANCH)

    assert reopened.snapshot_used
    assert not reopened.repaired
    assert_same_memory(reopened, replayed(cache.path))


def test_events_after_the_snapshot_are_folded_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = busy_service()
    cache = open_cache(tmp_path)
    service.sync(cache)
    cache.close()
    monkeypatch.setattr(base, "SNAPSHOT_EVERY", 1000)  # no new snapshot for a while
    cache = LocalCache.open(cache.path, BRANCH)
    saved = len(service.log)
    service.run(cmd.PauseCounter(at=at(30), counter_id=C2, reason="Break"))
    service.run(cmd.ResumeCounter(at=at(31), counter_id=C2))
    service.sync(cache)
    # The process dies here (no close): the next start folds the events after it.

    reopened = LocalCache.open(cache.path, BRANCH)

    assert reopened.snapshot_used
    assert reopened._replica.folded == len(service.log) - saved > 0
    assert not reopened.repaired
    assert_same_memory(reopened, replayed(cache.path))
    assert_same_memory(reopened, cache)


def saved_cache(tmp_path: Path) -> LocalCache:
    service = busy_service()
    cache = open_cache(tmp_path)
    service.sync(cache)
    cache.close()
    return cache


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE snapshot SET event_id = 'another'",  # the log it covered is not this one
        "UPDATE snapshot SET events = events + 1",
        "UPDATE snapshot SET server_seq = server_seq + 1",
        "UPDATE snapshot SET crc = crc + 1",  # a damaged page
        "UPDATE snapshot SET fingerprint = 'an older build'",
        "UPDATE snapshot SET format = format + 1",
        "UPDATE snapshot SET reference_version = 'v0'",
        "DELETE FROM events WHERE server_seq = (SELECT max(server_seq) FROM events)",
    ],
)
def test_a_snapshot_that_does_not_match_the_file_is_replaced_by_a_replay(
    tmp_path: Path, sql: str
) -> None:
    cache = saved_cache(tmp_path)
    edit_snapshot(cache.path, sql)

    reopened = LocalCache.open(cache.path, BRANCH)

    assert not reopened.snapshot_used
    assert_same_memory(reopened, replayed(cache.path))
    reopened.close()
    assert LocalCache.open(cache.path, BRANCH).snapshot_used  # a good one was saved again


def test_an_unreadable_snapshot_is_replaced_by_a_replay(tmp_path: Path) -> None:
    cache = saved_cache(tmp_path)
    body = '{"tickets": [["not a ticket"]]}'
    edit_snapshot(
        cache.path, "UPDATE snapshot SET body = ?, crc = ?", body, zlib.crc32(body.encode())
    )

    reopened = LocalCache.open(cache.path, BRANCH)

    assert not reopened.snapshot_used
    assert_same_memory(reopened, replayed(cache.path))


def test_a_snapshot_that_disagrees_with_the_projection_is_dropped(tmp_path: Path) -> None:
    cache = saved_cache(tmp_path)
    conn = sqlite3.connect(cache.path)
    lines = conn.execute("SELECT body FROM snapshot").fetchone()[0].split("\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("T"))
    rows = json.loads(lines[first][1:])
    rows[0][9] = "cancelled"  # a well-formed lie about one ticket
    lines[first] = "T" + json.dumps(rows)
    text = "\n".join(lines)
    conn.execute("UPDATE snapshot SET body = ?, crc = ?", (text, zlib.crc32(text.encode())))
    conn.commit()
    conn.close()

    reopened = LocalCache.open(cache.path, BRANCH)

    assert not reopened.snapshot_used
    assert not reopened.repaired  # the projection was right all along
    assert_same_memory(reopened, replayed(cache.path))


def test_no_snapshot_is_saved_or_used_by_a_build_that_cannot_fingerprint_its_fold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = saved_cache(tmp_path)
    monkeypatch.setattr(snapshot, "fingerprint", lambda: None)

    reopened = LocalCache.open(cache.path, BRANCH)
    assert not reopened.snapshot_used
    reopened.close()
    conn = sqlite3.connect(cache.path)
    assert conn.execute("SELECT count(*) FROM snapshot").fetchone() == (0,)
    conn.close()


def test_a_failed_pull_leaves_the_snapshot_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = busy_service()
    cache = open_cache(tmp_path)
    service.sync(cache)
    before = sqlite3.connect(cache.path).execute("SELECT server_seq, body FROM snapshot").fetchone()
    service.run(cmd.PauseCounter(at=at(30), counter_id=C2, reason="Break"))
    service.run(cmd.ResumeCounter(at=at(31), counter_id=C2))

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("sync.client.base.CacheFile._project", broken)
    with pytest.raises(OSError, match="disk full"):
        service.sync(cache)
    monkeypatch.undo()

    after = sqlite3.connect(cache.path).execute("SELECT server_seq, body FROM snapshot").fetchone()
    assert after == before
    reopened = LocalCache.open(cache.path, BRANCH)
    assert reopened.snapshot_used
    assert_same_memory(reopened, replayed(cache.path))


def test_reference_data_that_changes_what_folds_stops_snapshots_until_the_next_replay(
    tmp_path: Path,
) -> None:
    service = busy_service()
    cache = open_cache(tmp_path)
    service.sync(cache)
    services = [
        ServiceRef(id=ACCOUNTS, code="X", name="Accounts"),  # its tickets no longer fold
        ServiceRef(id=LOANS, code="L", name="Loans"),
    ]
    cache.apply_reference(reference(version="v2", services=services))
    assert not cache._replica.replayable
    cache.close()

    reopened = LocalCache.open(cache.path, BRANCH)

    assert not reopened.snapshot_used  # folded with v1: replayed with v2
    assert reopened._replica.replayable


def test_a_file_without_the_snapshot_table_is_upgraded(tmp_path: Path) -> None:
    cache = saved_cache(tmp_path)
    conn = sqlite3.connect(cache.path)
    conn.executescript(  # the version 2 schema: without what versions 3 and 4 add
        "DROP TABLE snapshot; DROP INDEX ix_events_ticket_id;"
        " ALTER TABLE events DROP COLUMN ticket_id;"
        " DROP TABLE kpi_facts; DROP TABLE kpi_hours; DROP TABLE kpi_branch_hours;"
        " DROP TABLE kpi_meta; DROP TABLE kpi_dirty;"
    )
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()

    upgraded = LocalCache.open(cache.path, BRANCH)

    assert upgraded.backup_path is not None
    assert not upgraded.snapshot_used
    assert_same_memory(upgraded, replayed(cache.path))
    upgraded.close()
    assert LocalCache.open(cache.path, BRANCH).snapshot_used


def facts(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM kpi_facts ORDER BY ticket_id, ord").fetchall()
    finally:
        conn.close()


def test_a_file_without_kpi_facts_gets_them_from_its_log_and_keeps_its_snapshot(
    tmp_path: Path,
) -> None:
    cache = saved_cache(tmp_path)
    expected = facts(cache.path)
    assert expected  # the busy service's tickets have facts
    conn = sqlite3.connect(cache.path)
    conn.executescript(  # the version 3 schema: without what version 4 adds
        "DROP INDEX ix_events_ticket_id; ALTER TABLE events DROP COLUMN ticket_id;"
        " DROP TABLE kpi_facts; DROP TABLE kpi_hours; DROP TABLE kpi_branch_hours;"
        " DROP TABLE kpi_meta; DROP TABLE kpi_dirty;"
    )
    conn.execute("PRAGMA user_version=3")
    conn.commit()
    conn.close()

    upgraded = LocalCache.open(cache.path, BRANCH)

    assert upgraded.snapshot_used  # the fold did not change: the snapshot still holds
    # Every ticket is listed, and its facts written from the log when flushed.
    conn = sqlite3.connect(cache.path)
    listed = conn.execute("SELECT count(*) FROM kpi_dirty").fetchone()[0]
    conn.close()
    assert listed == len({row[0] for row in expected})
    assert upgraded.flush_facts() == 0
    assert facts(cache.path) == expected
    upgraded.close()
    reopened = LocalCache.open(cache.path, BRANCH)
    assert reopened.snapshot_used
    assert facts(cache.path) == expected  # neither lost nor written twice
    reopened.close()


def test_a_snapshot_with_a_line_of_unknown_kind_is_not_used(tmp_path: Path) -> None:
    cache = saved_cache(tmp_path)
    conn = sqlite3.connect(cache.path)
    text = conn.execute("SELECT body FROM snapshot").fetchone()[0] + '\nX["?"]'
    conn.execute("UPDATE snapshot SET body = ?, crc = ?", (text, zlib.crc32(text.encode())))
    conn.commit()
    conn.close()

    reopened = LocalCache.open(cache.path, BRANCH)

    assert not reopened.snapshot_used
    assert_same_memory(reopened, replayed(cache.path))


@pytest.mark.parametrize("per_line", [3, state_codec.ROWS_PER_LINE])
def test_the_body_is_a_header_then_lines_of_tickets_and_numbers(
    per_line: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_codec, "ROWS_PER_LINE", per_line)
    desk = busy_desk()
    assert len(desk.state.tickets) > 3  # several lines at 3 a line
    header, *lines = snapshot.encode(desk.state).split("\n")
    assert json.loads(header)["branch_id"] == desk.state.branch_id
    tickets = [json.loads(r[1:]) for r in lines if r.startswith("T")]
    numbers = [json.loads(r[1:]) for r in lines if r.startswith("N")]
    assert len(tickets) + len(numbers) == len(lines)
    assert all(0 < len(rows) <= per_line for rows in tickets + numbers)
    assert [t[0] for rows in tickets for t in rows] == list(desk.state.tickets)
    assert sum(len(rows) for rows in numbers) == len(desk.state.numbers)
    assert snapshot.decode(snapshot.encode(desk.state)) == desk.state
    decoded = snapshot.decode(snapshot.encode(desk.state))
    for ticket in decoded.tickets.values():  # repeated values are shared, not copied
        if ticket.queue_key is not None:
            assert ticket.queue_key[-1] is ticket.id
