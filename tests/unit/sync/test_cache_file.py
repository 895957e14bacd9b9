"""The cache file: its name, pragmas, schema versions, backups and refusals."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Connection, inspect, text

from core import commands as cmd
from sync.client import migrations
from sync.client.cache import LocalCache
from sync.client.errors import NotACacheFile, SchemaTooNew
from sync.client.paths import cache_path
from sync.client.store import make_engine, metadata
from tests.unit.sync.builders import ACCOUNTS, BRANCH, C1, at, open_cache, view


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_safe_file_name_per_server_tenant_and_branch(tmp_path: Path) -> None:
    path = cache_path(tmp_path / "data", "https://Queue.Example.org:8443/api", "Acme Bank", BRANCH)
    assert path.parent.is_dir()
    assert path.suffix == ".sqlite3"
    assert path.name.startswith("cache-queue.example.org-8443-acme-bank-01900000-")
    assert set(path.name) <= set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    others = {
        cache_path(tmp_path, "https://queue.example.org", "acme", BRANCH),
        cache_path(tmp_path, "https://queue.example.org", "acme", "another-branch"),
        cache_path(tmp_path, "https://training.example.org", "acme", BRANCH),
        cache_path(tmp_path, "https://queue.example.org", "../etc", BRANCH),
    }
    assert len(others) == 4
    assert all(p.parent == tmp_path for p in others)


def test_connections_use_wal_full_sync_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    open_cache(tmp_path).close()
    engine = make_engine(tmp_path / "cache.sqlite3")
    with engine.connect() as conn:
        pragmas = [
            conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        ]
    engine.dispose()
    assert pragmas == ["wal", 2, 5000, 1]


def test_a_new_file_has_every_table_at_the_latest_version(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    assert migrations.file_version(cache.path) == migrations.latest_version()
    engine = make_engine(cache.path)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == set(metadata.tables)
    engine.dispose()
    assert cache.integrity_check() == "ok"
    assert cache.backup_path is None


def add_column(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE tickets ADD COLUMN display_note TEXT"))


def test_an_older_file_is_backed_up_then_migrated_keeping_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = open_cache(tmp_path)
    issued = cache.issue_ticket(ACCOUNTS, at=at(0))
    cache.close()
    current = migrations.latest_version()
    assert migrations.file_version(cache.path) == current

    monkeypatch.setitem(migrations.STEPS, current + 1, add_column)
    cache = LocalCache.open(tmp_path / "cache.sqlite3", BRANCH)

    assert migrations.file_version(cache.path) == current + 1
    assert cache.backup_path is not None
    assert cache.backup_path.exists()
    assert migrations.file_version(cache.backup_path) == current
    backup = sqlite3.connect(cache.backup_path)
    assert backup.execute("SELECT number FROM tickets").fetchall() == [(issued.number,)]
    backup.close()
    assert cache.ticket(issued.ticket_id) is not None
    assert cache.outbox_size() == 1
    assert cache.pending()[0]["id"] == str(issued.id)
    cache.execute(cmd.OpenCounter(at=at(1), counter_id=C1))
    cache.close()
    reopened = LocalCache.open(tmp_path / "cache.sqlite3", BRANCH)
    assert reopened.backup_path is None  # already at the latest version: no new copy


def test_a_file_from_a_newer_build_is_refused_and_left_untouched(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.issue_ticket(ACCOUNTS, at=at(0))
    cache.close()
    conn = sqlite3.connect(cache.path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    before = digest(cache.path)

    with pytest.raises(SchemaTooNew, match=r"newer QueueDesk \(cache schema 99;"):
        LocalCache.open(cache.path, BRANCH)

    assert digest(cache.path) == before
    assert list(tmp_path.glob("*.bak")) == []


def test_foreign_files_and_other_branches_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(NotACacheFile, match="not a QueueDesk cache"):
        LocalCache.open(other, BRANCH)
    (tmp_path / "junk.sqlite3").write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(NotACacheFile):
        LocalCache.open(tmp_path / "junk.sqlite3", BRANCH)

    open_cache(tmp_path).close()
    with pytest.raises(NotACacheFile, match="holds branch"):
        LocalCache.open(tmp_path / "cache.sqlite3", "another-branch")


def test_a_projection_that_disagrees_with_the_log_is_rebuilt_on_open(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    issued = cache.issue_ticket(ACCOUNTS, at=at(0))
    expected = cache.projection_hash()
    cache.close()
    conn = sqlite3.connect(tmp_path / "cache.sqlite3")
    conn.execute("UPDATE tickets SET status = 'done'")
    conn.execute("DELETE FROM counters")
    conn.commit()
    conn.close()

    cache = open_cache(tmp_path)

    assert cache.repaired
    assert cache.projection_hash() == expected
    assert view(cache, issued.ticket_id).status == "waiting"


def test_a_cache_opened_without_verifying_compares_its_projection_when_asked(
    tmp_path: Path,
) -> None:
    cache = open_cache(tmp_path)
    issued = cache.issue_ticket(ACCOUNTS, at=at(0))
    expected = cache.projection_hash()
    cache.close()
    conn = sqlite3.connect(tmp_path / "cache.sqlite3")
    conn.execute("UPDATE tickets SET status = 'done'")
    conn.commit()
    conn.close()

    cache = LocalCache.open(tmp_path / "cache.sqlite3", BRANCH, verify=False)
    try:
        assert not cache.verified
        assert not cache.repaired
        assert view(cache, issued.ticket_id).status == "done"  # the file as it stands
        seen = cache.waiting_changes(None)
        assert cache.waiting_changes(seen.change).everything is None  # nothing new yet
        assert seen.everything == {}  # the tampered file has nobody waiting

        assert cache.verify() is True

        assert cache.verified
        assert cache.repaired
        assert cache.projection_hash() == expected
        assert view(cache, issued.ticket_id).status == "waiting"
        again = cache.waiting_changes(seen.change)  # readers are told to read everything
        assert again.everything is not None
        assert [r.id for rows in again.everything.values() for r in rows] == [issued.ticket_id]
        assert cache.verify() is False  # once
    finally:
        cache.close()


def test_verifying_a_sound_cache_changes_nothing(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.issue_ticket(ACCOUNTS, at=at(0))
    cache.close()

    def rows() -> list[tuple[object, ...]]:
        with sqlite3.connect(tmp_path / "cache.sqlite3") as conn:
            return conn.execute("SELECT * FROM tickets ORDER BY id").fetchall()

    before = rows()
    cache = LocalCache.open(tmp_path / "cache.sqlite3", BRANCH, verify=False)
    try:
        seen = cache.waiting_changes(None)
        assert cache.verify() is False
        assert cache.verified
        assert not cache.repaired
        assert cache.waiting_changes(seen.change).everything is None  # no re-read needed
    finally:
        cache.close()
    assert rows() == before
