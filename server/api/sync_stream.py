"""The live sync stream: ``GET /sync/stream`` as Server-Sent Events (DESIGN "Sync" 4).

A stream first catches up from ``after`` (or the ``Last-Event-ID`` a
reconnecting client sends), then sends new events as they are committed and a
``heartbeat`` every ``sync_heartbeat_s`` seconds. Messages of type ``events``
carry a :class:`sync.protocol.StreamMessage` and the cursor as their SSE id; a
heartbeat carries a StreamMessage without events, so it also tells the cursor.

An idle stream holds nothing: it is exempt from the request gate (see
:mod:`server.request_gate`), its checks run in the request's session, which
closes before the first byte is sent, and each read afterwards is a short
read-only session in a worker thread. It sleeps on the
:class:`server.services.sync_hub.SyncHub` until its branch's log grows (in this
process or, on PostgreSQL, in any other) and also reads on every heartbeat, so
a missed wake-up delays an event by one heartbeat at most.

A stream ends when the caller's access token expires, or after
``sync_stream_max_s``; the client reconnects from its cursor with a fresh token,
so a revoked session or device does not keep a stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

import anyio
from fastapi import APIRouter, Header, Query, Request
from sqlalchemy.orm import Session, sessionmaker
from sse_starlette import EventSourceResponse, ServerSentEvent

from server.api.params import MAX_SQL_INT
from server.api.sync_support import ReaderCall
from server.config import Settings
from server.db import session_scope
from server.models import utc_now
from server.services.sync_hub import SyncHub
from server.services.sync_pull import EventPage, read_events
from sync.protocol import DEFAULT_PULL_LIMIT, StreamMessage

STREAM_PATH: Final = "/sync/stream"

router = APIRouter(tags=["sync"])

_SSE_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "Server-Sent Events: `events` (data: StreamMessage, id: cursor), "
        "`heartbeat` (data: StreamMessage without events)",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.get(STREAM_PATH, response_class=EventSourceResponse, responses=_SSE_RESPONSE)
async def stream(
    call: ReaderCall,
    request: Request,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_SQL_INT, description="The cursor to catch up from")
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> EventSourceResponse:
    """Catch up from ``after``, then send events as they are committed, with heartbeats."""
    settings: Settings = request.app.state.settings
    expires_at = call.principal.expires_at
    lifetime = settings.sync_stream_max_s
    if expires_at is not None:
        lifetime = min(lifetime, (expires_at - utc_now()).total_seconds())
    cursor = after if after is not None else _cursor_of(last_event_id)
    messages = _messages(
        request.app.state.sync_hub,
        request.app.state.read_session_factory,
        call.branch.id,
        cursor,
        heartbeat_s=settings.sync_heartbeat_s,
        deadline=time.monotonic() + lifetime,
        reads=_shared_reads(request),
    )
    return EventSourceResponse(messages, ping=0, headers={"Cache-Control": "no-store"})


class SharedReads:
    """Streams of one branch woken by the same commit read its new events once.

    Without this, a commit woke every connected console's stream into a read
    of its own: 50 consoles, 50 identical queries and 50 encodings of the same
    message, queueing for worker threads and connections. A stream joins a
    read of the same branch and cursor only if that read began after the
    branch's latest wake-up (:meth:`SyncHub.woken_at`): such a read sees every
    commit that has woken anyone so far; a later commit wakes the stream again.
    Runs on the serving loop only, like the hub's wake-ups, so needs no locks.
    """

    def __init__(self, hub: SyncHub) -> None:
        self._hub = hub
        self._reads: dict[tuple[uuid.UUID, int], tuple[int, asyncio.Future[_Read]]] = {}
        self._running: set[asyncio.Future[_Read]] = set()  # reads whose streams may be gone

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for the reads under way (the service is stopping; the engine goes next).

        A read runs in a worker thread with a connection checked out, and outlives
        the streams that asked for it; disposing of the engine under it would leave
        that connection to the garbage collector.
        """
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_s)

    async def read(
        self, factory: sessionmaker[Session], branch_id: uuid.UUID, cursor: int
    ) -> _Read:
        key = (branch_id, cursor)
        running = self._reads.get(key)
        if running is None or running[0] <= self._hub.woken_at(branch_id):
            # A task of its own: a stream that goes away does not cancel the others' read.
            task = asyncio.ensure_future(self._read(key, factory))
            task.add_done_callback(_retrieve)
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            running = self._reads[key] = (self._hub.stamp(), task)
        return await asyncio.shield(running[1])

    async def _read(self, key: tuple[uuid.UUID, int], factory: sessionmaker[Session]) -> _Read:
        try:
            # Subscribed while it runs, so commits meanwhile are stamped (woken_at)
            # even if every stream that asked for it has gone when they land.
            with self._hub.subscribe(key[0]):
                page = await anyio.to_thread.run_sync(_read, factory, *key)
            return page, page.stream_message()
        finally:
            running = self._reads.get(key)
            if running is not None and running[1] is asyncio.current_task():
                del self._reads[key]


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a shared read's failure as seen: its readers may all have gone."""
    if not task.cancelled():
        task.exception()


_Read = tuple[EventPage, str]


async def _messages(
    hub: SyncHub,
    factory: sessionmaker[Session],
    branch_id: uuid.UUID,
    cursor: int,
    *,
    heartbeat_s: float,
    deadline: float,
    reads: SharedReads,
) -> AsyncIterator[ServerSentEvent]:
    with hub.subscribe(branch_id) as wake:
        next_beat = time.monotonic() + heartbeat_s
        while time.monotonic() < deadline:
            wake.clear()  # before reading: a commit after the read sets it again
            page, data = await reads.read(factory, branch_id, cursor)
            if page.events_json:
                cursor = page.cursor
                yield ServerSentEvent(data, event="events", id=str(cursor))
                if page.has_more:
                    continue
            if time.monotonic() >= next_beat:
                beat = StreamMessage(events=[], cursor=cursor)
                yield ServerSentEvent(beat.model_dump_json(), event="heartbeat")
                next_beat = time.monotonic() + heartbeat_s
            wait_s = min(next_beat, deadline) - time.monotonic()
            with anyio.move_on_after(max(wait_s, 0)):
                await wake.wait()


def _shared_reads(request: Request) -> SharedReads:
    state = request.app.state
    reads: SharedReads | None = getattr(state, "sync_shared_reads", None)
    if reads is None:
        reads = state.sync_shared_reads = SharedReads(state.sync_hub)
    return reads


def _read(factory: sessionmaker[Session], branch_id: uuid.UUID, cursor: int) -> EventPage:
    with session_scope(factory) as session:
        return read_events(session, branch_id, cursor, DEFAULT_PULL_LIMIT)


def _cursor_of(last_event_id: str | None) -> int:
    """The cursor a reconnecting client's ``Last-Event-ID`` names; 0 if none or not one."""
    if last_event_id and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return 0
