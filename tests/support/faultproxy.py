"""A fault-injecting TCP proxy on 127.0.0.1 for sync tests and the chaos benchmark.

:class:`FaultProxy` listens on an ephemeral port and forwards every connection
to an upstream ``host:port`` (normally a QueueDesk server run by uvicorn). The
client under test talks to :attr:`FaultProxy.url` instead of the server, and the
test breaks the link on purpose:

* :meth:`~FaultProxy.cut` / :meth:`~FaultProxy.heal` — link down: new connections
  are refused (the listening socket is closed, so ``connect`` fails with
  ``ECONNREFUSED``) and existing ones are reset; :meth:`~FaultProxy.heal` listens
  again on the *same* port so the client's base URL stays valid.
* :meth:`~FaultProxy.delay` — latency added before every forwarded chunk, in both
  directions.
* :meth:`~FaultProxy.drop_responses` — the request reaches the server, the server
  commits and answers, and the answer is lost: the client connection is reset
  (RST) without forwarding a single response byte. This is the "did my write
  happen?" case that idempotency keys exist for.
* :meth:`~FaultProxy.truncate_responses` — only the first ``keep_bytes`` of the
  response are forwarded, then the client connection is closed (FIN).
* :meth:`~FaultProxy.reset_connections` — RST every current connection now.
* :meth:`~FaultProxy.stats` — counters of connections, bytes and faults applied.

Why its own thread and event loop: sync pytest tests and benchmark scripts have
no running loop, and async tests have their own that may be blocked in the code
under test. Every control method is safe to call from any thread *except* the
proxy's own loop thread; the ones that touch sockets (:meth:`~FaultProxy.cut`,
:meth:`~FaultProxy.heal`, :meth:`~FaultProxy.reset_connections`) run on the
proxy loop and return only once the effect is in place, so a test can assert
right after the call without sleeping.

Why response faults are HTTP-aware: HTTP clients keep connections alive, so a
fault armed "for the next connection" would never fire on a pooled connection.
Instead the proxy tracks, per connection, whether the client has sent bytes
since the last response began; the first upstream chunk after such bytes is the
*start of a response*, and that is where an armed drop/truncate fault is
claimed, on whichever connection answers next. Request bytes are always forwarded
in full, so a dropped response really means "the server processed it". Armed
response faults are consumed first-in first-out in the order they were armed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import threading
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

__all__ = ["FaultProxy", "ProxyStats"]

_T = TypeVar("_T")

CHUNK_SIZE = 64 * 1024
"""Bytes read per ``read()``; a delay is applied per chunk of at most this size."""

CONTROL_TIMEOUT_S = 10.0
"""Upper bound for a control call to complete on the proxy loop (guards against a hung loop)."""

_RST_LINGER = struct.pack("ii", 1, 0)
"""``SO_LINGER`` on with a zero timeout: ``close()`` then sends RST instead of FIN."""


@dataclass(frozen=True)
class ProxyStats:
    """A consistent snapshot of the proxy's counters, for assertions."""

    connections_accepted: int
    """Client connections accepted (including ones reset right away because of a cut)."""
    connections_active: int
    """Client connections currently linked to an upstream connection."""
    upstream_failures: int
    """Accepted client connections reset because the upstream refused to connect."""
    connections_reset: int
    """Connections reset (RST) by the proxy: cut, reset_connections, drop, upstream failure."""
    bytes_to_upstream: int
    """Request bytes forwarded client → server."""
    bytes_to_client: int
    """Response bytes forwarded server → client."""
    responses: int
    """Response starts seen (first upstream chunk after request bytes), faulted or not."""
    responses_dropped: int
    """Responses dropped by :meth:`FaultProxy.drop_responses`."""
    responses_truncated: int
    """Responses truncated by :meth:`FaultProxy.truncate_responses`."""
    pending_faults: int
    """Armed response faults not yet consumed."""


@dataclass(frozen=True)
class _ResponseFault:
    kind: Literal["drop", "truncate"]
    keep_bytes: int = 0


class _Link:
    """One client connection and its upstream connection. Touched only on the proxy loop."""

    def __init__(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> None:
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.upstream_reader = upstream_reader
        self.upstream_writer = upstream_writer
        self.awaiting_response = False
        """Request bytes went upstream since the last response start."""
        self.truncate_left: int | None = None
        """Response bytes still to forward before a truncation closes the link."""
        self.closed = False
        self.tasks: list[asyncio.Task[None]] = []


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close abruptly with RST, as a crashed peer or a dropped link looks to the other side.

    A plain ``close()`` sends FIN, which HTTP clients read as an orderly end of
    stream; SO_LINGER 0 makes the kernel send RST and discard unsent data.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_LINGER)
    writer.transport.abort()


class FaultProxy:
    """A TCP proxy from ``127.0.0.1:<ephemeral>`` to ``upstream_host:upstream_port``.

    Use it as a context manager (``with FaultProxy(host, port) as proxy: ...``)
    or call :meth:`start` and :meth:`stop`. See the module docstring for the
    faults and their semantics.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self._port = listen_port
        # State shared with other threads: guarded by _lock.
        self._lock = threading.Lock()
        self._delay_s = 0.0
        self._pending: deque[_ResponseFault] = deque()
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "connections_accepted",
                "connections_active",
                "upstream_failures",
                "connections_reset",
                "bytes_to_upstream",
                "bytes_to_client",
                "responses",
                "responses_dropped",
                "responses_truncated",
            ),
            0,
        )
        # State owned by the proxy loop thread.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._cut = False
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------

    @property
    def port(self) -> int:
        """The listening port (stable across :meth:`cut`/:meth:`heal`)."""
        if not self._port:
            raise RuntimeError("FaultProxy is not started")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` to connect to."""
        return (self.listen_host, self.port)

    @property
    def url(self) -> str:
        """``http://host:port`` base URL for HTTP clients."""
        return f"http://{self.listen_host}:{self.port}"

    @property
    def is_cut(self) -> bool:
        """Whether the link is currently down (:meth:`cut` without :meth:`heal`)."""
        return self._cut

    def start(self) -> Self:
        """Start the loop thread and listen; returns once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("FaultProxy already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="faultproxy", daemon=True
        )
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Reset every connection, stop listening and end the loop thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if thread.is_alive():
                self._call(self._shutdown())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CONTROL_TIMEOUT_S)
            self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------

    def cut(self) -> None:
        """Take the link down: refuse new connections and reset the existing ones.

        The listening socket is closed (so ``connect`` gets ``ECONNREFUSED``, as
        for a server that is gone) and every open connection is reset on both
        sides. Returns once both are done. Idempotent.
        """
        self._call(self._apply_cut())

    def heal(self) -> None:
        """Bring the link back up, listening again on the same port. Idempotent."""
        self._call(self._apply_heal())

    def delay(self, seconds: float) -> None:
        """Add ``seconds`` of latency before every forwarded chunk, both directions (0 = off).

        Applies from the next chunk on, including on open connections.
        """
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        with self._lock:
            self._delay_s = float(seconds)

    def drop_responses(self, n: int = 1) -> None:
        """Lose the next ``n`` responses after the server has produced them.

        The request is forwarded in full; at the first byte of the server's
        answer the client connection is reset (RST) without any response byte
        and the upstream connection is closed. Applies per response, on any
        connection, including pooled keep-alive ones.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._pending.extend(_ResponseFault("drop") for _ in range(n))

    def truncate_responses(self, n: int, keep_bytes: int) -> None:
        """Forward only the first ``keep_bytes`` of each of the next ``n`` responses.

        ``keep_bytes`` counts raw response bytes (status line and headers
        included). After them the client connection is closed with FIN, so the
        client reliably receives exactly those bytes and then end of stream
        (an RST could discard them still in flight); the upstream connection is
        reset.
        """
        if n < 0 or keep_bytes < 0:
            raise ValueError("n and keep_bytes must be >= 0")
        with self._lock:
            self._pending.extend(_ResponseFault("truncate", keep_bytes) for _ in range(n))

    def reset_connections(self) -> int:
        """Reset (RST) every current connection on both sides now; return how many.

        New connections are still accepted (unlike :meth:`cut`).
        """
        return self._call(self._reset_all())

    def clear_faults(self) -> None:
        """Heal, remove the delay and disarm pending response faults."""
        with self._lock:
            self._delay_s = 0.0
            self._pending.clear()
        self.heal()

    def stats(self) -> ProxyStats:
        """Snapshot of the counters (consistent: taken under one lock)."""
        with self._lock:
            return ProxyStats(**self._counts, pending_faults=len(self._pending))

    # -- thread plumbing -----------------------------------------------------------

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            # Host names (not IP literals) resolve in the default executor: shut it down
            # so no resolver thread outlives the proxy.
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the proxy loop and wait for its result from this thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            coro.close()
            raise RuntimeError("FaultProxy is not running")
        if threading.current_thread() is thread:
            coro.close()
            raise RuntimeError("FaultProxy control methods must not be called on its own loop")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(CONTROL_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._counts[name] += delta

    def _claim_response_fault(self) -> _ResponseFault | None:
        with self._lock:
            self._counts["responses"] += 1
            return self._pending.popleft() if self._pending else None

    def _current_delay(self) -> float:
        with self._lock:
            return self._delay_s

    # -- loop side -----------------------------------------------------------------

    async def _listen(self) -> None:
        # reuse_address lets heal() bind the same port while old connections sit in TIME_WAIT.
        self._server = await asyncio.start_server(
            self._handle, self.listen_host, self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _apply_cut(self) -> None:
        self._cut = True
        if self._server is not None:
            # close() closes the listening socket synchronously; waiting for
            # wait_closed() is pointless here (and on 3.12+ waits for all connections).
            self._server.close()
            self._server = None
        await self._reset_all()

    async def _apply_heal(self) -> None:
        self._cut = False
        if self._server is None:
            await self._listen()

    async def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            self._close_link(link, reset_client=True, reset_upstream=True)
        return len(links)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._reset_all()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def _close_link(self, link: _Link, *, reset_client: bool, reset_upstream: bool) -> None:
        """End a link once; RST or FIN per side; cancel its other pump.

        Counters are updated *before* the sockets close: a test that has just seen
        the error on its side must also see the counts.
        """
        if link.closed:
            return
        link.closed = True
        self._links.discard(link)
        self._count(connections_active=-1, connections_reset=int(reset_client or reset_upstream))
        for writer, reset in (
            (link.client_writer, reset_client),
            (link.upstream_writer, reset_upstream),
        ):
            if reset:
                _reset(writer)
            else:
                writer.close()
        current = asyncio.current_task()
        for task in link.tasks:
            if task is not current:
                task.cancel()

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._count(connections_accepted=1)
        try:
            if self._cut:  # accepted in the same loop turn as a cut(): still refuse
                self._count(connections_reset=1)
                _reset(client_writer)
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError:
                self._count(upstream_failures=1, connections_reset=1)
                _reset(client_writer)
                return
            link = _Link(client_reader, client_writer, upstream_reader, upstream_writer)
            self._links.add(link)
            self._count(connections_active=1)
            if self._cut:  # cut() ran while we were connecting upstream
                self._close_link(link, reset_client=True, reset_upstream=True)
                return
            try:
                link.tasks = [
                    asyncio.create_task(self._pump_requests(link)),
                    asyncio.create_task(self._pump_responses(link)),
                ]
                await asyncio.gather(*link.tasks, return_exceptions=True)
            finally:
                # Normal end: both directions reached EOF, so close both with FIN.
                # (A link ended by a fault or by stop() is already closed: no-op.)
                self._close_link(link, reset_client=False, reset_upstream=False)
        except asyncio.CancelledError:
            _reset(client_writer)
        finally:
            self._handlers.discard(task)

    async def _pump_requests(self, link: _Link) -> None:
        """Client → upstream, unchanged except for the delay; marks a response as expected."""
        try:
            while data := await link.client_reader.read(CHUNK_SIZE):
                if delay := self._current_delay():
                    await asyncio.sleep(delay)
                if link.closed:
                    return
                link.awaiting_response = True
                self._count(bytes_to_upstream=len(data))  # before write(): see _close_link
                link.upstream_writer.write(data)
                await link.upstream_writer.drain()
            if not link.closed and link.upstream_writer.can_write_eof():
                link.upstream_writer.write_eof()  # half-close, as the client did
        except OSError:
            self._close_link(link, reset_client=True, reset_upstream=True)

    async def _pump_responses(self, link: _Link) -> None:
        """Upstream → client, applying armed response faults at each response start."""
        try:
            while data := await link.upstream_reader.read(CHUNK_SIZE):
                if delay := self._current_delay():
                    await asyncio.sleep(delay)
                if link.closed:
                    return
                if link.awaiting_response:
                    link.awaiting_response = False
                    fault = self._claim_response_fault()
                    if fault is not None and fault.kind == "drop":
                        # Count first: a client that sees the error then also sees the count.
                        self._count(responses_dropped=1)
                        self._close_link(link, reset_client=True, reset_upstream=False)
                        return
                    if fault is not None:
                        self._count(responses_truncated=1)
                        link.truncate_left = fault.keep_bytes
                if link.truncate_left is not None:
                    data = data[: link.truncate_left]
                    link.truncate_left -= len(data)
                self._count(bytes_to_client=len(data))  # before write(): see _close_link
                link.client_writer.write(data)
                await link.client_writer.drain()
                if link.truncate_left == 0:
                    # FIN after the kept bytes: close() flushes them first.
                    self._close_link(link, reset_client=False, reset_upstream=True)
                    return
            if not link.closed and link.client_writer.can_write_eof():
                link.client_writer.write_eof()
        except OSError:
            self._close_link(link, reset_client=True, reset_upstream=True)
