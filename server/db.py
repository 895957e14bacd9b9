"""Engines, sessions and the unit of work of the central service.

Two backends are supported: SQLite (the embedded default for one machine) and
PostgreSQL through psycopg 3 (the system of record when scaled out).
:func:`make_engine` gives both the connection settings QueueDesk relies on;
:func:`session_scope` is the one way request handlers and jobs run a transaction.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Executable, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

from server.sqlite_wal import SAFETY_CHECKPOINT_PAGES, WalCheckpointer

SQLITE_BUSY_TIMEOUT_MS = 5000
# Execution option read by the SQLite "begin" hook: a read-only transaction
# starts deferred and never takes the write lock.
_SQLITE_DEFERRED = "queuedesk_sqlite_deferred"


class DatabaseUrlError(ValueError):
    """The database URL is malformed, names an unsupported backend, or cannot be used."""


def parse_database_url(url: str | URL) -> URL:
    """Parse and normalise ``url``; plain ``postgresql://`` means psycopg 3.

    Raises :class:`DatabaseUrlError` with a message fit for a person.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        # The text may hold a password in a place the parser did not recognise.
        shown = re.sub(r"//[^/@]*@", "//***@", str(url))
        raise DatabaseUrlError(
            f"malformed database URL {shown!r} "
            "(expected sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB)"
        ) from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend in {"postgresql", "postgres"} and driver in {"", "psycopg"}:
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in {"", "pysqlite"}:
        return parsed
    raise DatabaseUrlError(
        f"unsupported database URL scheme {parsed.drivername!r}: "
        "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    )


def make_engine(
    url: str | URL,
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    sqlite_foreign_keys: bool = True,
    background_checkpoints: bool = False,
    echo: bool = False,
) -> Engine:
    """An engine for ``url`` with QueueDesk's connection settings.

    SQLite: WAL journal, foreign keys on, a 5 s busy timeout, ``synchronous=NORMAL``
    (durable across application crashes; WAL keeps the file consistent on power
    loss), the database directory created when missing, and every transaction
    started with ``BEGIN IMMEDIATE`` (see :func:`_install_sqlite_hooks`).
    ``sqlite_foreign_keys=False`` is for migrations that rebuild tables.
    ``background_checkpoints=True`` leaves WAL checkpoints to a
    :class:`~server.sqlite_wal.WalCheckpointer` (:func:`wal_checkpointer`) that
    the caller runs: a commit then checkpoints only a WAL grown past
    :data:`~server.sqlite_wal.SAFETY_CHECKPOINT_PAGES`.

    PostgreSQL: a bounded pool that checks connections before use and recycles
    them before typical idle-connection timeouts of proxies; sessions in UTC.
    """
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUrlError(
                    f"cannot create the folder {str(folder)!r} of the SQLite database: "
                    f"{exc.strerror or exc}"
                ) from exc
        queue = _sqlite_write_queue(database)
        # A file's pool hands out the most recently returned connection first (see
        # SQLiteWriteQueue); an in-memory database has one connection per thread.
        pool = {"pool_use_lifo": True} if queue is not None else {}
        engine = create_engine(
            parsed,
            echo=echo,
            connect_args={"factory": _writer_connection_class(queue)},
            **pool,
        )
        autocheckpoint = SAFETY_CHECKPOINT_PAGES if background_checkpoints else None
        _install_sqlite_hooks(
            engine, foreign_keys=sqlite_foreign_keys, autocheckpoint=autocheckpoint
        )
        return engine
    return create_engine(
        parsed,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=30,
        connect_args={
            "connect_timeout": 10,
            "application_name": "queuedesk-server",
            "options": "-c timezone=UTC",
        },
    )


@dataclass(eq=False, slots=True)
class _Waiter:
    """A writer in line: a thread blocked on ``event``, or a task of ``loop`` on ``future``."""

    event: threading.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = None
    granted: bool = False


class SQLiteWriteQueue:
    """The writers of one SQLite file in this process, one at a time, first come first served.

    SQLite's busy handler makes a waiting writer poll with growing sleeps (up to
    100 ms), so with many request threads the write lock sits free while they all
    sleep: the service idles and the slowest requests wait for nothing. Writers
    of one process line up here instead, and the turn passes straight to the
    next in line; busy_timeout still arbitrates between processes. Threads and
    tasks of the event loop wait in the same line (:meth:`take`, :meth:`wait_turn`),
    so neither kind can starve the other.

    A writer's turn is taken in one of two ways:

    * by a connection, when it begins its transaction (``BEGIN IMMEDIATE``), and
      given back when that transaction ends (:func:`_writer_connection_class`);
    * for a whole unit of work in the event loop's thread (:meth:`wait_turn`),
      from before a pooled connection is checked out to after it is returned. A
      connection beginning in that thread then finds the turn its own. The pool
      hands out its most recently returned connection first, so the next writer
      gets the last writer's connection: SQLite drops a connection's page cache
      whenever another connection has written since its last transaction, so
      writers taking turns on one connection read what they need from memory.

    A nested writer in a thread that holds the turn (a second connection, while
    the first is in its transaction) waits as SQLite would, then fails the same way.
    """

    def __init__(self, timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
        self.timeout_s = timeout_s
        self._mutex = threading.Lock()
        self._busy = False
        self._line: deque[_Waiter] = deque()
        self._holder: int | None = None  # the thread holding a unit-of-work turn
        self._busy_since = 0.0
        self._busy_total = 0.0

    def locked(self) -> bool:
        """Whether some writer holds the turn now."""
        return self._busy

    def busy_seconds(self) -> float:
        """How long, in all, some writer has held the turn (a monotonic clock's seconds)."""
        with self._mutex:
            if self._busy:
                return self._busy_total + time.monotonic() - self._busy_since
            return self._busy_total

    def _become_busy(self) -> None:  # under the mutex
        self._busy = True
        self._busy_since = time.monotonic()

    def take(self) -> bool:
        """Wait for the turn, for one connection's transaction.

        False when this thread holds a unit-of-work turn already: the transaction
        runs in it, and the unit gives it back. Raises ``database is locked`` after
        the busy timeout, as SQLite would.
        """
        if self._holder == threading.get_ident():
            return False
        self._wait_in_thread()
        return True

    def release(self) -> None:
        """Give back a turn: to the next in line, if any."""
        with self._mutex:
            while self._line:
                waiter = self._line.popleft()
                waiter.granted = True
                if waiter.event is not None:
                    waiter.event.set()
                    return
                assert waiter.loop is not None
                try:
                    waiter.loop.call_soon_threadsafe(self._hand_over, waiter)
                except RuntimeError:  # that loop is closed: nobody is waiting there
                    continue
                return
            self._busy = False
            self._busy_total += time.monotonic() - self._busy_since

    async def wait_turn(self) -> None:
        """Wait in line without blocking the event loop; then hold the turn in its thread.

        The caller runs its unit of work without awaiting anything and then calls
        :meth:`end_turn`. Raises ``database is locked`` after the busy timeout.
        """
        loop = asyncio.get_running_loop()
        with self._mutex:
            if not self._busy:
                self._become_busy()
                self._holder = threading.get_ident()
                return
            waiter = _Waiter(loop=loop, future=loop.create_future())
            self._line.append(waiter)
        future = waiter.future
        assert future is not None
        try:
            await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except BaseException as exc:
            with self._mutex:
                if not waiter.granted:
                    self._line.remove(waiter)
                    given = False
                else:
                    given = True
            if given:
                # Handed over, or about to be: pass the turn on once it arrives.
                future.add_done_callback(lambda _: self.release())
            if isinstance(exc, TimeoutError):
                raise sqlite3.OperationalError("database is locked") from None
            raise
        self._holder = threading.get_ident()

    def _hand_over(self, waiter: _Waiter) -> None:
        # In the waiter's loop, with the turn already granted to it.
        if waiter.future is not None and not waiter.future.done():
            waiter.future.set_result(None)

    def end_turn(self) -> None:
        """Give back a unit-of-work turn."""
        self._holder = None
        self.release()

    def _wait_in_thread(self) -> None:
        with self._mutex:
            if not self._busy:
                self._become_busy()
                return
            waiter = _Waiter(event=threading.Event())
            self._line.append(waiter)
        assert waiter.event is not None
        if waiter.event.wait(self.timeout_s):
            return
        with self._mutex:
            if waiter.granted:
                return  # handed over just as the wait ended
            self._line.remove(waiter)
        raise sqlite3.OperationalError("database is locked")


_WRITE_QUEUES: dict[str, SQLiteWriteQueue] = {}
_WRITE_QUEUES_MUTEX = threading.Lock()


def _sqlite_write_queue(database: str) -> SQLiteWriteQueue | None:
    """The write queue of this SQLite file: one per file, shared by every engine of the process.

    In-memory databases are private to a connection and need none.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    key = str(Path(database).expanduser().resolve())
    with _WRITE_QUEUES_MUTEX:
        return _WRITE_QUEUES.setdefault(key, SQLiteWriteQueue())


def write_queue(engine: Engine) -> SQLiteWriteQueue | None:
    """The write queue of ``engine``'s SQLite file; None for PostgreSQL and in-memory SQLite."""
    if engine.dialect.name != "sqlite":
        return None
    return _sqlite_write_queue(engine.url.database or "")


def wal_checkpointer(engine: Engine) -> WalCheckpointer | None:
    """A checkpointer for ``engine``'s SQLite file (not started); None for PostgreSQL
    and in-memory SQLite."""
    if write_queue(engine) is None:
        return None
    return WalCheckpointer(str(Path(engine.url.database or "").expanduser()))


def _writer_connection_class(queue: SQLiteWriteQueue | None) -> type[sqlite3.Connection]:
    """A DBAPI connection class holding a turn of ``queue`` from ``BEGIN IMMEDIATE`` to the end."""

    class WriterConnection(sqlite3.Connection):
        _holds_turn = False

        def begin_immediate(self) -> None:
            if queue is not None and not self._holds_turn:
                self._holds_turn = queue.take()
            try:
                self.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._release()
                raise

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self._release()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self._release()

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._release()

        def _release(self) -> None:
            if self._holds_turn and queue is not None:
                self._holds_turn = False
                queue.release()

    return WriterConnection


def _install_sqlite_hooks(
    engine: Engine, *, foreign_keys: bool, autocheckpoint: int | None = None
) -> None:
    """Per-connection pragmas, and SQLAlchemy (not the driver) emitting BEGIN.

    The sqlite3 driver's legacy mode does not BEGIN before SELECT or SAVEPOINT,
    which breaks repeatable reads and nested transactions, so the driver's
    transaction handling is switched off and the "begin" hook takes over.

    In WAL mode a deferred transaction that first reads and then writes fails at
    once with SQLITE_BUSY if another writer committed in between, and busy_timeout
    cannot help. Taking the write lock up front (``BEGIN IMMEDIATE``) makes
    concurrent writers queue on busy_timeout instead. Read-only sessions
    (:func:`make_session_factory` with ``read_only=True``) begin deferred.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
            if autocheckpoint is not None:
                cursor.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        if options.get(_SQLITE_DEFERRED):
            connection.exec_driver_sql("BEGIN")
            return
        dbapi_connection = connection.connection.dbapi_connection
        begin_immediate = getattr(dbapi_connection, "begin_immediate", None)
        if begin_immediate is None:  # a connection made outside make_engine's factory
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            begin_immediate()


def make_session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """A session factory bound to ``engine``.

    ``read_only=True`` is for readers that never write (pull, reports, the live
    stream): on SQLite they do not take the write lock, on PostgreSQL the
    transaction is READ ONLY so a stray write fails loudly.
    """
    bind = engine
    if read_only:
        if engine.dialect.name == "sqlite":
            bind = engine.execution_options(**{_SQLITE_DEFERRED: True})
        else:
            bind = engine.execution_options(postgresql_readonly=True)
    # expire_on_commit=False: handlers return ORM objects after the commit.
    return sessionmaker(bind=bind, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit when the block ends normally, roll back on error.

    The session is always closed, so its connection goes back to the pool.
    """
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class DriverQuery:
    """A Core statement that SQLite runs straight on the driver's connection.

    SQLAlchemy's work around each execution (the compiled-statement lookup,
    parameter processing, the result's set-up) cost about 0.1 ms a statement:
    a third of a queue request, whose path runs a dozen small statements. On
    SQLite the statements of that path skip it: compiled once, with each
    parameter's bind processor taken from its column type at compile time (so
    values are stored exactly as SQLAlchemy stores them: UUIDs as 32 hex digits,
    aware times as naive UTC text, JSON as text), run on the transaction's own
    driver connection.

    Rows come back as the driver hands them (SQLite: UUIDs as hex text, JSON as
    text), so callers read them through :func:`as_uuid_value` and the like.
    Other backends run the statement through SQLAlchemy as usual.
    """

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: _Compiled | None = None

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Every row, as plain tuples (SQLite) or SQLAlchemy rows (others)."""
        if connection.dialect.name != "sqlite":
            return list(connection.execute(self.statement, dict(params)).all())
        compiled = self._compiled or self._compile(connection)
        driver = connection.connection.driver_connection
        assert driver is not None
        return driver.execute(compiled.sql, compiled.args(params)).fetchall()

    def execute_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per parameter set (a write without RETURNING)."""
        if connection.dialect.name != "sqlite":
            connection.execute(self.statement, [dict(r) for r in rows])
            return
        compiled = self._compiled or self._compile(connection)
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.executemany(compiled.sql, compiled.many(rows))

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Any | None:
        found = self.rows(connection, params)
        return found[0] if found else None

    def _compile(self, connection: Connection) -> _Compiled:
        dialect = connection.dialect
        compiled = self.statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        assert compiled.positiontup is not None  # SQLite's paramstyle is positional
        if "POSTCOMPILE" in compiled.string:  # expanding IN lists, literal-rendered binds
            raise ValueError("DriverQuery runs statements whose SQL text is known up front")
        names = tuple(compiled.positiontup)
        single: list[Callable[[Any], Any] | None] = []
        columns: list[_Column | None] = []
        for name in names:
            type_ = compiled.binds[name].type
            process = type_.dialect_impl(dialect).bind_processor(dialect)
            immutable = process is not None and _immutable_values(type_)
            single.append(_remembering(process) if immutable and process else process)
            columns.append(None if process is None else _Column(process, immutable))
        params = dict(compiled.params)
        self._compiled = _Compiled(compiled.string, names, params, tuple(single), tuple(columns))
        return self._compiled


def _remembering(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # The statements of a request repeat the same tenant, branch, device and "now":
    # the driver value of a repeated UUID or time is worked out once. Only immutable
    # values: a mutable one (a JSON dict) may change between two writes.
    last: list[tuple[Any, Any]] = [(None, process(None))]

    def remembering(value: Any) -> Any:
        seen, result = last[0]
        if value is seen:
            return result
        result = process(value)
        last[0] = (value, result)  # one tuple: a thread reads a matching pair
        return result

    return remembering


def _immutable_values(type_: TypeEngine[Any]) -> bool:
    try:
        return issubclass(type_.python_type, (uuid.UUID, datetime))
    except NotImplementedError:
        return False


_COLUMNS_FROM = 16  # rows from which a batch is converted a column at a time


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A statement's SQL text with its positional parameters and their bind processors."""

    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any]
    processors: tuple[Callable[[Any], Any] | None, ...]
    columns: tuple[_Column | None, ...]
    pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(init=False)

    def __post_init__(self) -> None:
        names = self.names
        pick: Callable[[Mapping[str, Any]], tuple[Any, ...]]
        if not names:
            pick = _no_values
        elif len(names) == 1:
            pick = _one_value(names[0])  # itemgetter of one name gives no tuple
        else:
            pick = itemgetter(*names)
        object.__setattr__(self, "pick", pick)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        # One C-level pick of every value (an executemany converts hundreds of
        # rows of a dozen values); a missing name takes the statement's default.
        try:
            values = self.pick(params)
        except KeyError:
            values = self.pick({**self.defaults, **params})
        return [
            value if process is None else process(value)
            for process, value in zip(self.processors, values, strict=True)
        ]

    def many(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The driver values of many parameter sets (as :meth:`args` gives each).

        Converted a column at a time: the values of each column go through its
        bind processor in one ``map``, and a column of immutable values converts
        each distinct object once (the rows of a write repeat the same tenant,
        branch, device, counter and "now"). A push writes hundreds of rows of a
        dozen values, and converting them row by row, through a wrapper per value,
        took about a quarter of its time (sampled). A few rows go row by row.
        """
        if len(rows) < _COLUMNS_FROM:  # a request's own row or two: set-up would dominate
            return [tuple(self.args(r)) for r in rows]
        if not self.names:
            return [()] * len(rows)
        pick = self.pick
        try:
            picked = list(map(pick, rows))
        except KeyError:
            defaults = self.defaults
            picked = [pick({**defaults, **r}) for r in rows]
        converted = [
            values if column is None else column.convert(values)
            for column, values in zip(self.columns, zip(*picked, strict=True), strict=True)
        ]
        return list(zip(*converted, strict=True))


@dataclass(frozen=True, slots=True)
class _Column:
    """One parameter's bind processor, applied to a whole column of values."""

    process: Callable[[Any], Any]
    immutable: bool  # the same object always converts to the same value

    def convert(self, values: Sequence[Any]) -> Sequence[Any]:
        if not self.immutable:
            return list(map(self.process, values))
        keys = list(map(id, values))  # the values are alive: ids stay distinct
        distinct = dict(zip(keys, values, strict=True))
        if len(distinct) == len(keys):
            return list(map(self.process, values))
        done = {key: self.process(value) for key, value in distinct.items()}
        return list(map(done.__getitem__, keys))


def _no_values(params: Mapping[str, Any]) -> tuple[Any, ...]:
    return ()


def _one_value(name: str) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    def pick(params: Mapping[str, Any]) -> tuple[Any, ...]:
        return (params[name],)

    return pick


def as_uuid_value(value: Any) -> uuid.UUID:
    """A UUID column's raw value (SQLite: 32 hex digits; PostgreSQL: a UUID) as a UUID."""
    return value if isinstance(value, uuid.UUID) else parse_uuid(value)


@lru_cache(maxsize=16384)
def parse_uuid(text: str) -> uuid.UUID:
    """``uuid.UUID(text)``, remembered (``ValueError`` when it is none).

    Events name the same branch, device, counters and services again and again,
    and a ticket several times; building a UUID from text costs about 2 µs.
    """
    return uuid.UUID(text)
