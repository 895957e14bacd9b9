"""A bound on API requests in flight, so a burst queues instead of failing.

A request runs its dependencies and its handler in separate worker-thread calls
and holds its database transaction (and on a branch, the branch lock) in
between. When more requests are in flight than there are worker threads or
pooled connections, the request holding a lock cannot get a thread or a
connection to finish, and everyone times out (SQLite "database is locked",
PostgreSQL pool timeouts: 500s). Queueing requests here, in the event loop and
before they take a thread, keeps the number in flight below both limits, so the
holder of any lock can always finish.

SQLite has a single writer, and the writers of one process wait for it in one
line (:class:`server.db.SQLiteWriteQueue`), in worker threads or, for the ticket
and counter routes, in the event loop; each hands it straight to the next. A
few requests in flight keep that line fed: while one writes, the next ones are
read off the socket, have their tokens checked, wait in line, or send their
answers. Only one writes at a time either way; more in flight would only wait
longer. Fewer writers in flight than the pool has connections also means the
event loop, holding the turn, never waits for a connection that a writer still
in line holds.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Starlette's worker thread pool has 40 threads; leave some for everything else.
MAX_IN_FLIGHT = 32
# Enough to overlap everything around one SQLite writer; well below the SQLite
# engine's pool (5 connections and 10 overflow) and the thread pool.
SQLITE_IN_FLIGHT = 8


class RequestGate:
    """Plain ASGI middleware: at most ``limit`` ``/api/`` requests run at once."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        prefix: str = "/api/",
        exempt: frozenset[str] = frozenset(),
    ) -> None:
        if limit < 1:
            raise ValueError("the request gate needs a limit of at least 1")
        self.app = app
        self.limit = limit
        self.prefix = prefix
        # Paths that answer slowly without holding a lock (the live sync stream):
        # they hold a slot for their checks, up to the start of the response, and
        # give it back for the long wait that follows.
        self.exempt = exempt
        self._slots: asyncio.Semaphore | None = None  # made in the serving loop, on first use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not path.startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        if path not in self.exempt:
            async with self._slots:
                await self.app(scope, receive, send)
            return
        slots = self._slots
        await slots.acquire()
        held = True

        async def send_releasing(message: Message) -> None:
            nonlocal held
            if held and message["type"] == "http.response.start":
                held = False
                slots.release()  # the checks are done; the stream itself waits unqueued
            await send(message)

        try:
            await self.app(scope, receive, send_releasing)
        finally:
            if held:
                slots.release()


def in_flight_limit(backend: str, pool_size: int, max_overflow: int) -> int:
    """A short queue for SQLite's one writer; else what both pools allow."""
    if backend == "sqlite":
        return SQLITE_IN_FLIGHT
    return max(1, min(MAX_IN_FLIGHT, pool_size + max_overflow))
