"""WAL checkpoints of the service's SQLite file run in a thread of their own."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from server import db as db_module
from server.db import make_engine, wal_checkpointer
from server.sqlite_wal import SAFETY_CHECKPOINT_PAGES, Checkpoint, WalCheckpointer
from tests.server.api_support import running_app

ROWS_PER_COMMIT = 8  # 4 KiB each: about ten pages a commit


def _write(engine: Engine, commits: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS blobs (data BLOB)"))
    for _ in range(commits):
        with engine.begin() as conn:
            for _ in range(ROWS_PER_COMMIT):
                conn.execute(text("INSERT INTO blobs VALUES (randomblob(4000))"))


def _wal_pages(path: Path) -> int:
    """Pages in the WAL file's allocation (it is reused, not shrunk, when SQLite starts over)."""
    wal = Path(f"{path}-wal")
    return wal.stat().st_size // 4096 if wal.exists() else 0


def _passive(path: Path) -> Checkpoint:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        connection.close()
    return Checkpoint(bool(row[0]), int(row[1]), int(row[2]))


def _eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_writers_checkpoint_themselves_by_default(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        _write(engine, 250)  # about 2,500 pages
        assert _wal_pages(path) < 1_200  # started over after SQLite's 1,000-page checkpoints
    finally:
        engine.dispose()


def test_the_services_writers_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    engine = make_engine(f"sqlite:///{path}", background_checkpoints=True)
    try:
        with engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == SAFETY_CHECKPOINT_PAGES
        _write(engine, 250)
        assert _wal_pages(path) > 2_000  # no commit copied the WAL back
    finally:
        engine.dispose()


def test_the_checkpointer_copies_the_wal_so_sqlite_starts_it_again(tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    engine = make_engine(f"sqlite:///{path}", background_checkpoints=True)
    checkpointer = wal_checkpointer(engine)
    assert checkpointer is not None
    checkpointer.interval_s = 0.01
    try:
        _write(engine, 250)
        before = _passive(path)
        assert before.wal_pages > 2_000
        checkpointer.start()
        _eventually(lambda: checkpointer.checkpoints >= 1)
        _write(engine, 1)  # the first write after a complete checkpoint starts the WAL over
        after = _passive(path)
        assert after.complete
        assert after.wal_pages < 50
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM blobs")).scalar() == 251 * 8
    finally:
        checkpointer.stop()
        engine.dispose()
    assert not any(t.name == "sqlite-wal-checkpointer" for t in threading.enumerate())


def test_a_wal_the_checkpointer_cannot_keep_up_with_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "SAFETY_CHECKPOINT_PAGES", 200)
    path = tmp_path / "busy.db"
    engine = make_engine(f"sqlite:///{path}", background_checkpoints=True)
    try:
        _write(engine, 100)  # about 1,000 pages, and no checkpointer running
        assert _wal_pages(path) < 320  # the writers checkpointed at 200 pages
    finally:
        engine.dispose()


def test_the_service_runs_a_checkpointer_while_it_is_up(db_url: str) -> None:
    def running() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "sqlite-wal-checkpointer"]

    with running_app(db_url) as world:
        engine: Engine = world.app.state.engine
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == (
                    SAFETY_CHECKPOINT_PAGES
                )
        assert len(running()) == (1 if engine.dialect.name == "sqlite" else 0)
    assert running() == []


def test_no_checkpointer_for_an_in_memory_database() -> None:
    engine = make_engine("sqlite://", background_checkpoints=True)
    try:
        assert wal_checkpointer(engine) is None
    finally:
        engine.dispose()


def test_the_checkpointer_refuses_a_bad_interval_and_a_second_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval must be > 0"):
        WalCheckpointer(str(tmp_path / "x.db"), interval_s=0)
    checkpointer = WalCheckpointer(str(tmp_path / "x.db"), interval_s=0.01)
    checkpointer.start()
    try:
        with pytest.raises(RuntimeError, match="started already"):
            checkpointer.start()
    finally:
        checkpointer.stop()


def test_a_database_that_cannot_be_opened_is_logged_and_the_thread_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpointer = WalCheckpointer(str(tmp_path / "missing" / "x.db"), interval_s=0.01)
    with caplog.at_level(logging.ERROR, logger="server.sqlite_wal"):
        checkpointer.start()
        checkpointer.stop()
    assert "cannot open" in caplog.text
    assert checkpointer.checkpoints == 0
