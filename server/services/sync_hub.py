"""Waking live sync streams when a branch's event log grows.

A stream (``GET /sync/stream``) sleeps until its branch has new accepted events.
Whoever writes them calls :func:`mark_appended` inside the writing transaction;
the wake-up itself happens only **after the commit**, so a woken stream always
finds the events it was woken for:

- in this process, the :class:`SyncHub` listens to the session factory's
  ``after_commit`` and wakes the branch's subscribers (``after_rollback``
  forgets the marks);
- on PostgreSQL, :func:`mark_appended` also runs ``pg_notify`` in the writing
  transaction, which the database delivers at commit to every process that
  ``LISTEN``\\s (:func:`listen_postgres`, one task per server process), so
  streams served by another replica wake too.

A wake-up carries no data: the stream reads from its cursor, so a lost or
doubled notification costs at most a read, and streams also read on every
heartbeat in case a notification was missed while the listener reconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

CHANNEL: Final = "queuedesk_sync"
RECONNECT_DELAY_S: Final = (0.5, 1.0, 2.0, 5.0)
_MARKS: Final = "queuedesk.sync_appended"

log = logging.getLogger(__name__)


def mark_appended(session: Session, branch_id: uuid.UUID) -> None:
    """Note that this transaction appended accepted events to ``branch_id``'s log."""
    session.info.setdefault(_MARKS, set()).add(branch_id)
    if session.get_bind().dialect.name == "postgresql":
        # Transactional: delivered at commit, dropped on rollback; PostgreSQL
        # folds identical notifications of one transaction into one.
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": str(branch_id)},
        )


class SyncHub:
    """In-process fan-out: one :class:`asyncio.Event` per subscribed stream.

    :meth:`publish` may be called from any thread (request handlers run in
    worker threads); the events are set on the serving loop.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[uuid.UUID, set[asyncio.Event]] = {}
        self._lock = threading.Lock()
        # A counter in the serving loop's order, for readers to tell whether a read
        # began after the latest wake-up of a branch (see SharedReads in the stream).
        self._clock = 0
        self._woken: dict[uuid.UUID | None, int] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, branch_id: uuid.UUID | None) -> None:
        """Wake the streams of ``branch_id`` (every stream when None).

        With no subscriber to wake there is nothing to do: a stream that
        subscribes later reads from its cursor after subscribing, so it finds
        these events. (A shared read subscribes for as long as it runs, see
        :class:`server.api.sync_stream.SharedReads`, so a read that began before
        this commit is never joined by a stream after it.) Most commits of a
        branch nobody streams then cost no wake-up of the serving loop.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if branch_id is not None:
            with self._lock:
                if not self._subscribers.get(branch_id):
                    return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake(branch_id)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(self._wake, branch_id)

    @contextlib.contextmanager
    def subscribe(self, branch_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever ``branch_id`` may have new events; clear it before reading."""
        wake = asyncio.Event()
        with self._lock:
            self._subscribers.setdefault(branch_id, set()).add(wake)
        try:
            yield wake
        finally:
            with self._lock:
                waiting = self._subscribers.get(branch_id)
                if waiting is not None:
                    waiting.discard(wake)
                    if not waiting:
                        del self._subscribers[branch_id]

    def subscriber_count(self, branch_id: uuid.UUID) -> int:
        with self._lock:
            return len(self._subscribers.get(branch_id, ()))

    def watch(self, factory: sessionmaker[Session]) -> None:
        """Publish the branches marked by sessions of ``factory`` once they commit."""
        event.listen(factory, "after_commit", self._after_commit)
        event.listen(factory, "after_rollback", _forget_marks)

    def _after_commit(self, session: Session) -> None:
        for branch_id in session.info.pop(_MARKS, ()):
            self.publish(branch_id)

    def stamp(self) -> int:
        """The next point in the serving loop's order (call on the loop)."""
        self._clock += 1
        return self._clock

    def woken_at(self, branch_id: uuid.UUID) -> int:
        """The stamp of the latest wake-up that concerned ``branch_id`` (0: none yet)."""
        return max(self._woken.get(branch_id, 0), self._woken.get(None, 0))

    def _wake(self, branch_id: uuid.UUID | None) -> None:
        self._woken[branch_id] = self.stamp()
        with self._lock:
            if branch_id is None:
                targets = [w for waiting in self._subscribers.values() for w in waiting]
            else:
                targets = list(self._subscribers.get(branch_id, ()))
        for wake in targets:
            wake.set()


def _forget_marks(session: Session) -> None:
    session.info.pop(_MARKS, None)


def psycopg_conninfo(url: URL) -> str:
    """The libpq URL of an SQLAlchemy ``postgresql+psycopg`` URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_postgres(hub: SyncHub, url: URL) -> None:
    """``LISTEN`` for appended events of any process and wake this process's streams.

    Runs until cancelled, reconnecting after a lost connection. After every
    (re)connect all streams are woken once: a notification sent while nobody
    listened is lost, and a read costs little.
    """
    import psycopg

    failures = 0
    while True:
        try:
            connection = await psycopg.AsyncConnection.connect(
                psycopg_conninfo(url), autocommit=True, application_name="queuedesk-sync-listen"
            )
        except (psycopg.Error, OSError) as exc:
            await _pause(failures, exc)
            failures += 1
            continue
        try:
            async with connection:
                await connection.execute(f"LISTEN {CHANNEL}")
                failures = 0
                hub.publish(None)
                async for notice in connection.notifies():
                    hub.publish(_branch_of(notice.payload))
        except (psycopg.Error, OSError) as exc:
            await _pause(failures, exc)
            failures += 1


async def _pause(failures: int, exc: BaseException) -> None:
    delay = RECONNECT_DELAY_S[min(failures, len(RECONNECT_DELAY_S) - 1)]
    log.warning("sync listener: %s; reconnecting in %.1f s", exc, delay)
    await asyncio.sleep(delay)


def _branch_of(payload: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(payload)
    except ValueError:
        return None  # not ours to interpret: wake everyone, they read and find out


@contextlib.asynccontextmanager
async def running_hub(factory: sessionmaker[Session], url: URL) -> AsyncIterator[SyncHub]:
    """A hub bound to the serving loop, watching ``factory``; on PostgreSQL, listening too."""
    hub = SyncHub()
    hub.bind(asyncio.get_running_loop())
    hub.watch(factory)
    listener: asyncio.Task[Any] | None = None
    if url.get_backend_name() == "postgresql":
        listener = asyncio.create_task(listen_postgres(hub, url), name="sync-listen")
    try:
        yield hub
    finally:
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        event.remove(factory, "after_commit", hub._after_commit)
        event.remove(factory, "after_rollback", _forget_marks)
