"""Engines, the unit of work, sequences and settings."""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from server import db as db_module
from server.config import Settings, get_settings
from server.db import (
    DatabaseUrlError,
    DriverQuery,
    SQLiteWriteQueue,
    as_uuid_value,
    make_engine,
    make_session_factory,
    parse_database_url,
    session_scope,
    write_queue,
)
from server.models import AuditLog, Branch, NumberLease, Tenant, allocate_server_seqs


def _add_branch(factory: sessionmaker[Session]) -> uuid.UUID:
    with session_scope(factory) as session:
        tenant = Tenant(slug=f"t{uuid.uuid4().hex[:8]}", name="T")
        session.add(tenant)
        session.flush()
        branch = Branch(tenant_id=tenant.id, name="Main", code="MAIN", time_zone="UTC")
        session.add(branch)
        session.flush()
        return branch.id


# --- engines -------------------------------------------------------------------


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new' / 'folder' / 'q.db'}")
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
    finally:
        engine.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 5000,
        "synchronous": 1,
    }
    assert (tmp_path / "new" / "folder" / "q.db").exists()


def test_sqlite_reader_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with engine.connect() as writer:
            writer.begin()  # BEGIN IMMEDIATE: holds the write lock until the end
            writer.exec_driver_sql("INSERT INTO t VALUES (1)")
            with session_scope(make_session_factory(engine, read_only=True)) as session:
                assert session.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
            writer.rollback()
    finally:
        engine.dispose()


def _write_lock(path: Path) -> db_module.SQLiteWriteQueue:
    queue = db_module._WRITE_QUEUES.get(str(path.resolve()))
    assert queue is not None, "no in-process write queue for this file"
    return queue


def test_sqlite_writers_of_one_process_queue_on_a_lock_not_on_busy_polls(tmp_path: Path) -> None:
    """A waiting writer starts as soon as the one before it ends, and all of them commit."""
    engines = [make_engine(f"sqlite:///{tmp_path / 'q.db'}") for _ in range(2)]
    try:
        with engines[0].begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        started = threading.Event()
        order: list[str] = []

        def second_writer() -> None:
            started.set()
            with engines[1].begin() as conn:  # another engine on the same file: same lock
                order.append("second began")
                conn.exec_driver_sql("INSERT INTO t VALUES (2)")

        with engines[0].connect() as first:
            first.begin()
            first.exec_driver_sql("INSERT INTO t VALUES (1)")
            thread = threading.Thread(target=second_writer)
            thread.start()
            started.wait(5)
            thread.join(0.3)
            assert thread.is_alive()  # waiting for the lock, not failing
            assert order == []
            assert _write_lock(tmp_path / "q.db").locked()
            order.append("first commits")
            first.commit()
        thread.join(5)
        assert order == ["first commits", "second began"]
        assert not _write_lock(tmp_path / "q.db").locked()
        with engines[0].connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
    finally:
        for engine in engines:
            engine.dispose()


def test_sqlite_write_lock_is_released_by_rollback_after_a_failed_statement(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER PRIMARY KEY)")
        with engine.connect() as conn:
            conn.begin()
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            conn.rollback()
        assert not _write_lock(tmp_path / "q.db").locked()
        with engine.connect() as conn:
            conn.begin()
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            with pytest.raises(DBAPIError):
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")  # a constraint error
            conn.rollback()
        assert not _write_lock(tmp_path / "q.db").locked()
        done = threading.Event()

        def writer() -> None:
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (3)")
            done.set()

        thread = threading.Thread(target=writer)
        thread.start()
        thread.join(5)
        assert done.is_set()  # nothing still held the lock
    finally:
        engine.dispose()


def test_a_unit_of_work_turn_covers_its_connections_transactions(tmp_path: Path) -> None:
    """A connection beginning in the thread that holds the turn neither waits nor gives it back."""
    engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        queue = write_queue(engine)
        assert queue is not None

        async def unit_of_work() -> None:
            await queue.wait_turn()
            try:
                with engine.begin() as conn:  # would wait out the busy timeout if it took the turn
                    conn.exec_driver_sql("INSERT INTO t VALUES (1)")
                assert queue.locked()  # the commit left the turn to the unit of work
                with engine.begin() as conn:
                    conn.exec_driver_sql("INSERT INTO t VALUES (2)")
            finally:
                queue.end_turn()

        asyncio.run(unit_of_work())
        assert not queue.locked()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
    finally:
        engine.dispose()


def test_threads_and_event_loop_tasks_wait_for_the_writer_turn_in_one_line() -> None:
    """First come, first served, whether a writer waits in a thread or in the event loop."""
    queue = SQLiteWriteQueue()
    order: list[str] = []

    def thread_writer(name: str, lined_up: threading.Event) -> None:
        lined_up.set()
        queue.take()
        order.append(name)
        queue.release()

    async def main() -> None:
        await queue.wait_turn()  # free: taken at once
        first_thread = threading.Event()
        threads = [threading.Thread(target=thread_writer, args=("thread 1", first_thread))]
        threads[0].start()
        assert first_thread.wait(5)
        while not queue._line:  # until the thread is in line
            await asyncio.sleep(0.001)

        async def loop_writer() -> None:
            await queue.wait_turn()
            order.append("task")
            queue.end_turn()

        task = asyncio.create_task(loop_writer())
        while len(queue._line) < 2:
            await asyncio.sleep(0.001)
        second_thread = threading.Event()
        threads.append(threading.Thread(target=thread_writer, args=("thread 2", second_thread)))
        threads[1].start()
        assert second_thread.wait(5)
        while len(queue._line) < 3:
            await asyncio.sleep(0.001)
        assert order == []
        queue.end_turn()
        await asyncio.wait_for(task, 5)
        for thread in threads:
            await asyncio.to_thread(thread.join, 5)

    asyncio.run(main())
    assert order == ["thread 1", "task", "thread 2"]
    assert not queue.locked()


def test_a_writer_that_gives_up_waiting_leaves_the_line() -> None:
    queue = SQLiteWriteQueue(timeout_s=0.2)

    async def main() -> None:
        await queue.wait_turn()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            await queue.wait_turn()  # a second task of the loop, while the first holds it
        cancelled = asyncio.create_task(queue.wait_turn())
        await asyncio.sleep(0.05)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert not queue._line
        errors: list[BaseException] = []

        def thread_writer() -> None:
            try:
                queue.take()
            except sqlite3.OperationalError as exc:
                errors.append(exc)

        await asyncio.to_thread(thread_writer)
        assert [str(e) for e in errors] == ["database is locked"]
        assert not queue._line
        queue.end_turn()

    asyncio.run(main())
    assert not queue.locked()
    assert queue.take()  # free again
    queue.release()


def test_a_turn_handed_to_a_task_that_was_cancelled_passes_on() -> None:
    queue = SQLiteWriteQueue()

    async def main() -> None:
        await queue.wait_turn()
        waiting = asyncio.create_task(queue.wait_turn())
        while not queue._line:
            await asyncio.sleep(0.001)
        queue.end_turn()  # granted to the waiting task, which has not run yet...
        waiting.cancel()  # ...and is cancelled before it does
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0.01)  # the hand-over callback runs
        assert not queue.locked()
        await asyncio.wait_for(queue.wait_turn(), 1)
        queue.end_turn()

    asyncio.run(main())


def test_the_sqlite_pool_hands_out_the_connection_returned_last(tmp_path: Path) -> None:
    """The next writer gets the last writer's connection, whose page cache is current."""
    engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    try:
        first, second = engine.connect(), engine.connect()
        last = second.connection.dbapi_connection
        first.close()
        second.close()
        with engine.connect() as again:
            assert again.connection.dbapi_connection is last
    finally:
        engine.dispose()
    assert write_queue(make_engine("sqlite://")) is None  # in memory: private to a connection


# Parametrizing "backend" directly runs a test on one backend only.
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_read_only_sessions_refuse_writes_on_postgres(engine: Engine) -> None:
    def write() -> None:
        with session_scope(make_session_factory(engine, read_only=True)) as session:
            session.add(Tenant(slug="ro", name="RO"))

    with pytest.raises(DBAPIError, match="read-only"):
        write()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///x.db", "sqlite"),
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
    ],
)
def test_database_urls_are_normalised(url: str, driver: str) -> None:
    assert parse_database_url(url).drivername == driver


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "malformed"),
        ("postgresql://u:secret@h:port/db", "malformed"),
        ("mysql://u@h/db", "unsupported"),
        ("postgresql+psycopg2://u@h/db", "unsupported"),
    ],
)
def test_bad_database_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(DatabaseUrlError, match=message) as caught:
        parse_database_url(url)
    assert "secret" not in str(caught.value)


# --- unit of work --------------------------------------------------------------


def test_session_scope_commits_on_success_and_rolls_back_on_error(
    session_factory: sessionmaker[Session],
) -> None:
    def add_tenant(slug: str, fail: bool) -> None:
        with session_scope(session_factory) as session:
            session.add(Tenant(slug=slug, name=slug))
            session.flush()
            if fail:
                raise RuntimeError("boom")

    add_tenant("kept", fail=False)
    with pytest.raises(RuntimeError):
        add_tenant("dropped", fail=True)
    with session_scope(session_factory) as session:
        assert session.scalars(select(Tenant.slug)).all() == ["kept"]


def test_server_seqs_are_contiguous_under_concurrent_pushes(
    session_factory: sessionmaker[Session],
) -> None:
    branch_id = _add_branch(session_factory)
    got: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def push(times: int) -> None:
        try:
            for _ in range(times):
                with session_scope(session_factory) as session:
                    # Read first, then write: the pattern that fails under a
                    # deferred SQLite transaction when another writer commits.
                    session.scalar(select(func.count()).select_from(Tenant))
                    seqs = allocate_server_seqs(session, branch_id, count=2)
                with lock:
                    got.extend(seqs)
        except BaseException as exc:  # surfaced below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(10,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(got) == list(range(1, 81))


def test_a_rolled_back_allocation_gives_its_numbers_back(
    session_factory: sessionmaker[Session],
) -> None:
    branch_id = _add_branch(session_factory)

    def failed_push() -> None:
        with session_scope(session_factory) as session:
            allocate_server_seqs(session, branch_id, count=5)
            raise RuntimeError("push failed")

    with pytest.raises(RuntimeError):
        failed_push()
    with session_scope(session_factory) as session:
        assert allocate_server_seqs(session, branch_id) == range(1, 2)


# --- settings ------------------------------------------------------------------


def test_settings_default_to_an_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.data_dir == tmp_path / "data"  # set by the autouse fixture
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'queuedesk.db'}"
    assert (settings.jwt_issuer, settings.access_token_ttl_s) == ("queuedesk", 900)
    assert (settings.refresh_token_ttl_s, settings.refresh_grace_s) == (30 * 24 * 3600, 30)


def test_settings_are_read_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUEDESK_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("QUEUEDESK_ACCESS_TOKEN_TTL_S", "300")
    settings = get_settings()
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.access_token_ttl_s == 300
    assert get_settings() is settings


# --- statements run on the driver ----------------------------------------------


def test_driver_queries_bind_and_answer_as_sqlalchemy_does(
    session_factory: sessionmaker[Session],
) -> None:
    """UUID, date, boolean and literal parameters mean the same on the driver's
    cursor as through SQLAlchemy, on both backends; UUIDs read back through
    as_uuid_value are the same UUIDs."""
    branch_id = _add_branch(session_factory)
    day = datetime.date(2026, 3, 2)
    with session_scope(session_factory) as session:
        tenant_id = session.scalars(select(Branch.tenant_id).where(Branch.id == branch_id)).one()
        for first, on in ((1, day), (51, day), (1, day + datetime.timedelta(days=1))):
            common = {"tenant_id": tenant_id, "branch_id": branch_id, "business_day": on}
            session.add(NumberLease(**common, prefix="A", first=first, last=first + 49))
    leases = NumberLease.__table__.c
    tenants = Tenant.__table__.c
    statement = (
        select(leases.branch_id, leases.first, leases.last)
        .join_from(NumberLease.__table__, Tenant.__table__, tenants.id == leases.tenant_id)
        .where(
            leases.branch_id == bindparam("branch_id"),
            leases.business_day == bindparam("day"),
            leases.last >= bindparam("start"),
            tenants.disabled == bindparam("disabled"),
            leases.prefix == "A",
        )
        .order_by(leases.first)
        .limit(5)
    )
    query = DriverQuery(statement)
    params = {"branch_id": branch_id, "day": day, "start": 50, "disabled": False}
    with session_scope(session_factory) as session:
        connection = session.connection()
        through_sqlalchemy = [tuple(r) for r in connection.execute(statement, params)]
        on_the_driver = [
            (as_uuid_value(b), f, last) for b, f, last in query.rows(connection, params)
        ]
        assert query.first(connection, params | {"day": day + datetime.timedelta(days=2)}) is None
    assert through_sqlalchemy == [(branch_id, 1, 50), (branch_id, 51, 100)]
    assert on_the_driver == through_sqlalchemy


def test_driver_query_writes_read_back_as_sqlalchemy_wrote_them(
    session_factory: sessionmaker[Session],
) -> None:
    """Aware times of any zone are stored as the same UTC instant and JSON as JSON, in
    the format SQLAlchemy itself writes (so ordering and comparisons in SQL agree)."""
    branch_id = _add_branch(session_factory)
    with session_scope(session_factory) as session:
        tenant_id = session.scalars(select(Branch.tenant_id).where(Branch.id == branch_id)).one()
    names = ("tenant_id", "seq", "at", "actor_type", "action", "result", "details")
    names += ("prev_hash", "row_hash")
    table = AuditLog.__table__
    write = DriverQuery(table.insert().values({n: bindparam(n) for n in names}))
    berlin = datetime.timezone(datetime.timedelta(hours=1))
    at = datetime.datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=berlin)
    common = {"tenant_id": tenant_id, "actor_type": "system", "action": "test"}
    common |= {"result": "success", "prev_hash": "p", "row_hash": "r"}
    rows = [
        {**common, "seq": 1, "at": at, "details": {"a": [1, "x"], "b": None}},
        {**common, "seq": 2, "at": at + datetime.timedelta(seconds=1), "details": {}},
    ]
    with session_scope(session_factory) as session:
        write.execute_many(session.connection(), rows)
        session.add(AuditLog(**common, seq=3, at=at, details={"c": 1}))  # SQLAlchemy's own
    with session_scope(session_factory) as session:
        stored = session.execute(
            select(AuditLog.seq, AuditLog.at, AuditLog.details)
            .where(AuditLog.tenant_id == tenant_id, AuditLog.at <= at)
            .order_by(AuditLog.seq)
        ).all()
        if session.get_bind().dialect.name == "sqlite":
            with pytest.raises(ValueError, match="naive"):
                write.execute_many(
                    session.connection(), [{**rows[0], "at": at.replace(tzinfo=None)}]
                )
    assert [tuple(r) for r in stored] == [(1, at, {"a": [1, "x"], "b": None}), (3, at, {"c": 1})]
    assert stored[0][1].tzinfo is not None


def test_driver_queries_take_one_parameter_and_the_statements_own_values(
    session_factory: sessionmaker[Session],
) -> None:
    """A statement of a single parameter binds it (not its characters), and a name the
    caller leaves out takes the value the statement gives it, as through SQLAlchemy."""
    branch_id = _add_branch(session_factory)
    branches = Branch.__table__.c
    one = DriverQuery(select(branches.code).where(branches.id == bindparam("id")))
    given = DriverQuery(
        select(branches.code).where(
            branches.id == bindparam("id"), branches.code == bindparam("code", value="MAIN")
        )
    )
    with session_scope(session_factory) as session:
        connection = session.connection()
        assert [tuple(r) for r in one.rows(connection, {"id": branch_id})] == [("MAIN",)]
        assert one.first(connection, {"id": uuid.uuid4()}) is None
        assert [tuple(r) for r in given.rows(connection, {"id": branch_id})] == [("MAIN",)]
        assert given.first(connection, {"id": branch_id, "code": "OTHER"}) is None


# A few rows are converted one at a time, a batch of many a column at a time.
BATCH_SIZES = pytest.mark.parametrize("rounds", [1, 8], ids=["few", "many"])


@BATCH_SIZES
def test_driver_query_rows_keep_their_own_uuids_when_values_alternate(
    session_factory: sessionmaker[Session], rounds: int
) -> None:
    """A batch whose rows alternate between ids and times (and repeat them) stores each
    row's own: repeated values are converted once, never taken from another row."""
    first, second = _add_branch(session_factory), _add_branch(session_factory)
    with session_scope(session_factory) as session:
        tenants = dict(session.execute(select(Branch.id, Branch.tenant_id)).all())
    names = ("tenant_id", "seq", "at", "actor_type", "action", "result", "details")
    names += ("prev_hash", "row_hash")
    write = DriverQuery(AuditLog.__table__.insert().values({n: bindparam(n) for n in names}))
    at = datetime.datetime(2026, 3, 2, 9, 30, tzinfo=datetime.UTC)
    later = at + datetime.timedelta(seconds=1)
    common = {"actor_type": "system", "action": "test", "result": "success"}
    common |= {"details": {}, "prev_hash": "p", "row_hash": "r"}
    order = [first, second, second, first, second] * rounds
    times = {first: at, second: later}
    rows = [
        {**common, "tenant_id": tenants[b], "at": times[b], "seq": n} for n, b in enumerate(order)
    ]
    with session_scope(session_factory) as session:
        write.execute_many(session.connection(), rows)
    with session_scope(session_factory) as session:
        stored = session.execute(
            select(AuditLog.seq, AuditLog.tenant_id, AuditLog.at).where(AuditLog.action == "test")
        ).all()
    assert sorted(stored) == [(n, tenants[b], times[b]) for n, b in enumerate(order)]


@BATCH_SIZES
def test_driver_query_batches_take_the_statements_own_value_for_a_name_left_out(
    session_factory: sessionmaker[Session], rounds: int
) -> None:
    """In a batch, rows that leave out a name get the statement's value for it and rows
    that give one keep theirs, each with its own time and details."""
    branch_id = _add_branch(session_factory)
    with session_scope(session_factory) as session:
        tenant_id = session.scalars(select(Branch.tenant_id).where(Branch.id == branch_id)).one()
    names = ("tenant_id", "seq", "at", "actor_type", "result", "details", "prev_hash", "row_hash")
    values = {n: bindparam(n) for n in names} | {"action": bindparam("action", value="given")}
    write = DriverQuery(AuditLog.__table__.insert().values(values))
    at = datetime.datetime(2026, 3, 2, 9, 30, tzinfo=datetime.UTC)
    common = {"tenant_id": tenant_id, "actor_type": "system", "result": "success"}
    common |= {"prev_hash": "p", "row_hash": "r"}
    rows = [
        {**common, "seq": n, "at": at + datetime.timedelta(seconds=n), "details": {"n": n}}
        | ({"action": "own"} if n % 2 else {})
        for n in range(1, 5 * rounds + 1)
    ]
    with session_scope(session_factory) as session:
        write.execute_many(session.connection(), rows)
    with session_scope(session_factory) as session:
        stored = session.execute(
            select(AuditLog.seq, AuditLog.action, AuditLog.at, AuditLog.details)
            .where(AuditLog.tenant_id == tenant_id)
            .order_by(AuditLog.seq)
        ).all()
    assert [tuple(r) for r in stored] == [
        (n, "own" if n % 2 else "given", at + datetime.timedelta(seconds=n), {"n": n})
        for n in range(1, 5 * rounds + 1)
    ]


def test_driver_queries_refuse_statements_whose_text_depends_on_the_parameters(
    session_factory: sessionmaker[Session],
) -> None:
    query = DriverQuery(select(Branch.id).where(Branch.id.in_(bindparam("ids", expanding=True))))
    with session_scope(session_factory) as session:
        connection = session.connection()
        if connection.dialect.name != "sqlite":
            pytest.skip("other backends run every statement through SQLAlchemy")
        with pytest.raises(ValueError, match="known up front"):
            query.rows(connection, {"ids": [uuid.uuid4()]})
