"""The live sync stream (``GET /sync/stream``): catch-up, live events, heartbeats, fan-out.

The first tests run the app in process: the TestClient reads a response to
its end, so those streams are given a lifetime of a fraction of a second. The
others run real ``queuedesk-server serve`` processes and read the stream with
httpx-sse while pushing through another connection. On SQLite that also shows
the stream holds no request-gate slot (the gate lets only a few API requests
in at a time there): otherwise enough streams would keep every push waiting.

Live delivery is told apart from the stream's read-on-heartbeat fallback by
time: the servers' heartbeat interval is long, and an event must arrive well
before the next heartbeat would have found it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from server.api import sync_stream
from server.db import make_engine, make_session_factory, session_scope
from server.services.branches import create_counter, create_service
from sync.protocol import StreamMessage
from tests.server.api_support import PASSWORD, TENANT, running_app, seed
from tests.server.live import LiveServer, serve
from tests.server.sync_events import Console

STREAM = "/api/v1/sync/stream"
READ_TIMEOUT_S = 10.0


# --- in process ------------------------------------------------------------------


def _parse(text: str) -> list[dict[str, str]]:
    """The messages of an SSE body, as dicts of their fields."""
    messages = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            if name:
                fields[name] = value.removeprefix(" ")
        if fields:
            messages.append(fields)
    return messages


def test_a_stream_catches_up_beats_and_ends_with_its_lifetime(db_url: str) -> None:
    with running_app(db_url, sync_heartbeat_s=0.1, sync_stream_max_s=0.6) as world:
        with world.session() as session:
            service = create_service(session, world.tenant_id, world.branch_id, "A", "Accounts")
            counter = create_counter(session, world.tenant_id, world.branch_id, 1, "C1")
        login = world.login("staff1")
        headers = {"Authorization": f"Bearer {login['access_token']}"}
        console = Console(world.branch_id)
        events = [console.open(counter.id), console.issue(service.id, "A001")]
        pushed = world.client.post("/api/v1/sync/push", json=console.body(events), headers=headers)
        assert pushed.status_code == 200, pushed.text

        started = time.monotonic()
        query = {"branch_id": str(world.branch_id), "after": 1}
        response = world.client.get(STREAM, params=query, headers=headers)
        assert time.monotonic() - started < 5
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        messages = _parse(response.text)
        first = messages[0]
        assert (first["event"], first["id"]) == ("events", "2")
        catch_up = StreamMessage.model_validate_json(first["data"])
        assert [e.event["id"] for e in catch_up.events] == [events[1]["id"]]
        beats = [m for m in messages[1:] if m["event"] == "heartbeat"]
        assert len(beats) >= 3
        assert len(beats) == len(messages) - 1
        assert StreamMessage.model_validate_json(beats[-1]["data"]).cursor == 2

        resumed = world.client.get(
            STREAM,
            params={"branch_id": str(world.branch_id)},
            headers={**headers, "Last-Event-ID": "1"},
        )
        assert _parse(resumed.text)[0]["id"] == "2"


def test_shutting_down_waits_for_a_shared_read_under_way(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream's read runs in a worker thread and outlives the streams that asked
    for it: shutdown waits for it instead of disposing of the engine under it."""
    running, ended = threading.Event(), []
    real_read = sync_stream._read

    def slow_read(factory: sessionmaker[Session], branch_id: uuid.UUID, cursor: int) -> Any:
        with session_scope(factory) as session:
            session.execute(select(1)).all()  # a connection is checked out
            running.set()
            time.sleep(0.5)
            page = real_read(factory, branch_id, cursor)
        ended.append(time.monotonic())
        return page

    monkeypatch.setattr(sync_stream, "_read", slow_read)
    with running_app(db_url) as world:
        state = world.app.state
        reads = state.sync_shared_reads = sync_stream.SharedReads(state.sync_hub)
        world.client.portal.start_task_soon(  # as a stream that then went away
            reads.read, state.read_session_factory, world.branch_id, 0
        )
        assert running.wait(10)
        engine = state.engine
        disposed: list[float] = []
        event.listen(engine, "engine_disposed", lambda _e: disposed.append(time.monotonic()))
    assert ended  # the read had ended by the time the service was down
    assert disposed
    assert ended[0] <= disposed[0]  # before its engine was disposed of
    assert engine.pool.checkedout() == 0


def test_a_stream_is_refused_like_any_sync_call(db_url: str) -> None:
    with running_app(db_url, sync_stream_max_s=0.2) as world:
        query = {"branch_id": str(world.branch_id)}
        assert world.client.get(STREAM, params=query).status_code == 401
        headers = {"Authorization": f"Bearer {world.login('staff1')['access_token']}"}
        other = {"branch_id": str(uuid.uuid4())}
        assert world.client.get(STREAM, params=other, headers=headers).status_code == 404
        # staff1 works at the seeded branch only.
        elsewhere = {"branch_id": str(world.other_branch_id)}
        assert world.client.get(STREAM, params=elsewhere, headers=headers).status_code == 403


# --- real servers --------------------------------------------------------------------


@dataclass
class Branch:
    """What the live tests need of the seeded branch."""

    branch_id: uuid.UUID
    service_id: uuid.UUID
    counter_id: uuid.UUID


def _seed(database_url: str) -> Branch:
    engine = make_engine(database_url)
    try:
        factory = make_session_factory(engine)
        ids = seed(factory)
        with session_scope(factory) as session:
            tid, bid = ids["tenant_id"], ids["branch_id"]
            service = create_service(session, tid, bid, "A", "Accounts")
            counter = create_counter(session, tid, bid, 1, "Counter 1", [service.id])
            return Branch(bid, service.id, counter.id)
    finally:
        engine.dispose()


@contextmanager
def _client(server: LiveServer) -> Iterator[httpx.Client]:
    """A client of ``server`` signed in as staff1."""
    with httpx.Client(base_url=server.base_url, timeout=READ_TIMEOUT_S) as client:
        body = {"tenant": TENANT, "username": "staff1", "password": PASSWORD}
        login = client.post("/api/v1/auth/login", json=body)
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        yield client


@contextmanager
def _servers(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int, heartbeat_s: float
) -> Iterator[list[LiveServer]]:
    monkeypatch.setenv("QUEUEDESK_SYNC_HEARTBEAT_S", str(heartbeat_s))
    with ExitStack() as stack:
        yield [stack.enter_context(serve(db_url, tmp_path)) for _ in range(count)]


def _leased(client: httpx.Client, console: Console, branch: Branch) -> Iterator[str]:
    """Ticket numbers of a block leased to ``console``, as a console issues them offline."""
    body = {"branch_id": str(branch.branch_id), "device_id": str(console.id)}
    response = client.post("/api/v1/sync/leases", json=body)
    assert response.status_code == 200, response.text
    for block in response.json()["leases"]:
        yield from (f"{block['prefix']}{n:03}" for n in range(block["first"], block["last"] + 1))


def _push(client: httpx.Client, console: Console, events: list[dict[str, Any]]) -> None:
    response = client.post("/api/v1/sync/push", json=console.body(events))
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["results"]} == {"accepted"}


def _next(messages: Iterator[ServerSentEvent]) -> tuple[str, StreamMessage, float]:
    """The next message: its type, its payload and when it arrived."""
    sse = next(messages)
    return sse.event, StreamMessage.model_validate_json(sse.data), time.monotonic()


def _ids(message: StreamMessage) -> list[str]:
    return [e.event["id"] for e in message.events]


@pytest.mark.slow
def test_a_live_stream_gets_commits_at_once_and_beats_in_between(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    heartbeat_s = 2.0
    branch = _seed(db_url)
    with _servers(db_url, tmp_path, monkeypatch, 1, heartbeat_s) as [server], ExitStack() as stack:
        writer, reader = stack.enter_context(_client(server)), stack.enter_context(_client(server))
        console = Console(branch.branch_id)
        numbers = _leased(writer, console, branch)
        opened = console.open(branch.counter_id)
        _push(writer, console, [opened])
        query = {"branch_id": str(branch.branch_id), "after": 0}
        with connect_sse(reader, "GET", STREAM, params=query) as source:
            assert source.response.status_code == 200
            messages = source.iter_sse()
            kind, caught_up, _ = _next(messages)
            assert (kind, _ids(caught_up), caught_up.cursor) == ("events", [opened["id"]], 1)

            kind, beat, beat_at = _next(messages)
            assert (kind, beat.events, beat.cursor) == ("heartbeat", [], 1)
            # Right after a beat the stream would not read again for heartbeat_s.
            issued = console.issue(branch.service_id, next(numbers))
            _push(writer, console, [issued])
            kind, live, live_at = _next(messages)
            assert (kind, _ids(live), live.cursor) == ("events", [issued["id"]], 2)
            assert live_at - beat_at < heartbeat_s / 2

            # A ticket issued over REST (a kiosk) wakes the stream the same way.
            rest = writer.post(
                f"/api/v1/branches/{branch.branch_id}/tickets",
                json={"service_id": str(branch.service_id)},
            )
            assert rest.status_code == 201, rest.text
            kind, kiosk, kiosk_at = _next(messages)
            assert kind == "events"
            assert kiosk.events[0].event["ticket_id"] == rest.json()["id"]
            assert kiosk_at - beat_at < heartbeat_s

            kind, _, _ = _next(messages)
            assert kind == "heartbeat"


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_postgres_fans_out_events_across_server_processes(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No heartbeat (hence no fallback read) within the test: only LISTEN/NOTIFY can deliver.
    heartbeat_s = 300.0
    branch = _seed(db_url)
    with (
        _servers(db_url, tmp_path, monkeypatch, 2, heartbeat_s) as [one, two],
        ExitStack() as stack,
    ):
        writer, reader = stack.enter_context(_client(one)), stack.enter_context(_client(two))
        console = Console(branch.branch_id)
        numbers = _leased(writer, console, branch)
        opened = console.open(branch.counter_id)
        _push(writer, console, [opened])
        query = {"branch_id": str(branch.branch_id), "after": 0}
        with connect_sse(reader, "GET", STREAM, params=query) as source:
            messages = source.iter_sse()
            kind, caught_up, _ = _next(messages)
            assert (kind, _ids(caught_up)) == ("events", [opened["id"]])
            for number in (next(numbers), next(numbers)):
                issued = console.issue(branch.service_id, number)
                sent_at = time.monotonic()
                _push(writer, console, [issued])
                kind, live, arrived_at = _next(messages)
                assert (kind, _ids(live)) == ("events", [issued["id"]])
                assert arrived_at - sent_at < READ_TIMEOUT_S


@pytest.mark.slow
def test_fifty_consoles_connecting_at_once_all_get_their_stream(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A branch's consoles reconnect together after an outage: no stream fails.

    A stream's checks (token, branch, device) take the database like any request;
    they queue in the request gate with everyone else and give their slot back
    once the response starts. Unqueued, 50 of them at once exhausted the worker
    threads while holding SQLite's write lock: "database is locked", 500s.
    """
    import asyncio

    import httpx_sse

    branch = _seed(db_url)
    with _servers(db_url, tmp_path, monkeypatch, 1, 300.0) as [server], _client(server) as client:
        headers = {"Authorization": client.headers["Authorization"]}
        query = {"branch_id": str(branch.branch_id), "after": 0}

        async def connect(http: httpx.AsyncClient) -> tuple[int, str]:
            async with httpx_sse.aconnect_sse(
                http, "GET", STREAM, params=query, headers=headers
            ) as source:
                status = source.response.status_code
                if status != 200:
                    return status, (await source.response.aread()).decode(errors="replace")
                async for sse in source.aiter_sse():
                    return status, sse.event  # the first message: the stream is live
            return status, "closed"

        async def everyone() -> list[tuple[int, str]]:
            limits = httpx.Limits(max_connections=60)
            async with httpx.AsyncClient(
                base_url=server.base_url, timeout=60.0, limits=limits
            ) as http:
                return await asyncio.gather(*(connect(http) for _ in range(50)))

        # With nothing to catch up and no heartbeat due, a stream is live once a push
        # wakes it: push one event while everyone waits.
        async def scenario() -> list[tuple[int, str]]:
            streams = asyncio.ensure_future(everyone())
            await asyncio.sleep(1.0)  # most are connected and waiting by now; late ones catch up
            console = Console(branch.branch_id)
            await asyncio.to_thread(_push, client, console, [console.open(branch.counter_id)])
            return await streams

        results = asyncio.run(scenario())
        assert [status for status, _ in results] == [200] * 50, results
        assert {first for _, first in results} == {"events"}
