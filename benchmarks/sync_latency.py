"""How soon an event pushed by one console reaches every other console's live stream.

The service runs under uvicorn on a temporary SQLite database (helpers in
``sync_ingest.py``). 50 listening consoles, in this one asyncio process, each
hold their own connection (an ``httpx.AsyncClient``) to ``GET /sync/stream``
through :class:`sync.client.api.SyncApi`; 5 of them also apply every message to
their own :class:`sync.client.cache.LocalCache` (in a worker thread, as the
console's sync thread would). Console A runs commands on its own cache (issue a
ticket, call it, start, complete; one event each) and pushes each command's
events with ``SyncApi.push``; the clock starts just before the push is sent and
stops, per listener, when the event arrives on its stream (and when it has been
applied, for the 5 with a cache). The next command waits until every listener
has the previous one, so latency is measured without a backlog.

value = p99 of the push-to-receive latency over 200 commands x 50 listeners
(50 commands with ``--quick``), in ms, target <= 150 ms;
baseline = p50 of a loopback HTTP round trip (``GET /healthz``) in the same run;
ratio = value / baseline. ``ok`` when p99 <= 150 ms and no event went missing.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
from _report import parse_args, report
from sync_catchup import catch_up
from sync_ingest import Server, demo_server

from core.commands import CallNext, Command, Complete, OpenCounter, StartService
from core.errors import DomainError
from sync.client.api import ClientError, SyncApi
from sync.client.auth import AuthSession
from sync.client.cache import LocalCache
from sync.client.credentials import MemoryCredentialStore
from sync.protocol import LeaseRequest, PullResponse, PushRequest, StreamMessage

LISTENERS: Final = 50
WITH_CACHE: Final = 5
TARGET_P99_MS: Final = 150.0
WAIT_S: Final = 5.0  # an event not received by then counts as missing


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[max(0, min(len(ordered), math.ceil(len(ordered) * share)) - 1)]


@dataclass
class Wait:
    """One pushed event on its way to every listener."""

    started: float
    pushed: float = 0.0  # the push's own round trip
    received: list[float] = field(default_factory=list)
    applied: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        if len(self.received) >= LISTENERS and len(self.applied) >= WITH_CACHE:
            self.done.set()


@dataclass
class Board:
    waits: dict[str, Wait] = field(default_factory=dict)
    ready: list[asyncio.Event] = field(
        default_factory=lambda: [asyncio.Event() for _ in range(LISTENERS)]
    )
    reconnects: int = 0

    def arrived(self, index: int, message: StreamMessage, key: str) -> None:
        now = time.perf_counter()
        self.ready[index].set()
        for pulled in message.events:
            wait = self.waits.get(str(pulled.event["id"]))
            if wait is not None:
                getattr(wait, key).append(now - wait.started)
                wait.check()


async def listen(
    index: int, api: SyncApi, cache: LocalCache | None, branch: str, after: int, board: Board
) -> None:
    """Stream as a device of its own (the cache's, if any), reconnecting from the cursor
    as a console does, and note every arrival."""
    device = uuid.UUID(cache.device_id) if cache is not None else uuid.uuid4()
    while True:
        try:
            async for item in api.stream(uuid.UUID(branch), after, device_id=device):
                if not isinstance(item, StreamMessage):
                    continue
                after = item.cursor
                board.arrived(index, item, "received")
                if cache is not None and item.events:
                    page = PullResponse(events=item.events, cursor=item.cursor,
                                        has_more=False, last_device_seq=0)  # fmt: skip
                    await asyncio.to_thread(cache.apply_pull, page)
                    board.arrived(index, item, "applied")
        except ClientError as exc:
            board.reconnects += 1
            print(f"listener {index}: {exc}; reconnecting")
            await asyncio.sleep(0.5)


class Console:
    """Console A: runs commands on its cache and pushes them."""

    def __init__(self, api: SyncApi, cache: LocalCache) -> None:
        self.api, self.cache = api, cache
        self.branch, self.device = uuid.UUID(cache.branch_id), uuid.UUID(cache.device_id)
        self.counters: list[Any] = []
        self.ticket = ""

    async def start(self) -> None:
        await catch_up(self.api, self.cache)
        lease = await self.api.leases(LeaseRequest(branch_id=self.branch, device_id=self.device))
        self.cache.add_leases(lease.leases, lease.device_slot)
        reference = self.cache.reference()  # the services and counters
        assert reference is not None
        self.counters = [c for c in reference.counters if c.work_profile]
        for counter in reference.counters:
            with suppress(DomainError):  # already open
                self.cache.execute(OpenCounter(at=datetime.now(UTC), counter_id=counter.id))
        await self.push()

    async def push(self, board: Board | None = None) -> None:
        pending = self.cache.pending()
        wait = Wait(time.perf_counter())
        if board is not None:
            board.waits[str(pending[-1]["id"])] = wait
        request = PushRequest(branch_id=self.branch, device_id=self.device, events=pending)
        answer = await self.api.push(request)
        wait.pushed = time.perf_counter() - wait.started
        self.cache.apply_push_results(answer.results)

    def step(self, turn: int, at: datetime) -> None:
        """Command ``turn``: issue a ticket at a counter's first service, call, start, complete."""
        counter = self.counters[turn // 4 % len(self.counters)]
        if turn % 4 == 0:
            self.cache.issue_ticket(counter.work_profile[0], at=at)
        elif turn % 4 == 1:
            self.ticket = self.run(CallNext(at=at, counter_id=counter.id))[0].ticket_id
        elif turn % 4 == 2:
            self.run(StartService(at=at, ticket_id=self.ticket))
        else:
            self.run(Complete(at=at, ticket_id=self.ticket))

    def run(self, command: Command) -> list[Any]:
        return self.cache.execute(command)


async def healthz_p50_ms(base_url: str, count: int = 200) -> float:
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        await client.get("/healthz")
        times = []
        for _ in range(count):
            started = time.perf_counter()
            (await client.get("/healthz")).raise_for_status()
            times.append(time.perf_counter() - started)
    return percentile(times, 0.5) * 1000


async def measure(server: Server, tmp: Path, commands: int) -> dict[str, Any]:
    demo, board = server.demo, Board()
    baseline = await healthz_p50_ms(server.base_url)
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=server.base_url))
            for _ in range(LISTENERS + 1)
        ]
        session = AuthSession(clients[0], MemoryCredentialStore())
        await session.login(demo["tenant"], "staff1", demo["users"]["staff1"])
        apis = [SyncApi(c, session) for c in clients]
        caches = [LocalCache.open(tmp / f"c{i}.sqlite3", server.branch_id)
                  for i in range(WITH_CACHE + 1)]  # fmt: skip
        for cache in caches:
            stack.callback(cache.close)
        console = Console(apis[0], caches[0])
        await console.start()
        for i in range(WITH_CACHE):
            await catch_up(apis[i + 1], caches[i + 1])
        head = caches[1].cursor()
        tasks = []
        try:
            for i in range(LISTENERS):  # one at a time: see "connecting" in the report
                cache = caches[i + 1] if i < WITH_CACHE else None
                listener = listen(i, apis[i + 1], cache, server.branch_id, head - 1, board)
                tasks.append(asyncio.create_task(listener))
                await asyncio.wait_for(board.ready[i].wait(), 30.0)
            for turn in range(commands):
                console.step(turn, datetime.now(UTC))
                await console.push(board)
                wait = list(board.waits.values())[-1]
                with suppress(TimeoutError):
                    await asyncio.wait_for(wait.done.wait(), WAIT_S)
                await asyncio.sleep(0.01)
        finally:
            for task in tasks:
                task.cancel()
            ended = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [e for e in ended if not isinstance(e, asyncio.CancelledError)]
    for failure in failures[:3]:
        print(f"listener failed: {failure!r}")
    received = [t for w in board.waits.values() for t in w.received]
    applied = [t for w in board.waits.values() for t in w.applied]
    pushes = [w.pushed for w in board.waits.values()]
    firsts = [min(w.received) for w in board.waits.values() if w.received]
    missing = sum(LISTENERS - len(w.received) for w in board.waits.values())
    return {"received": received, "applied": applied, "missing": missing,
            "baseline": baseline, "failures": len(failures), "commands": len(board.waits),
            "reconnects": board.reconnects, "pushes": pushes, "firsts": firsts}  # fmt: skip


def main() -> None:
    args = parse_args(__doc__ or "")
    commands = 50 if args.quick else 200
    with demo_server(counters=3) as server:
        got = asyncio.run(measure(server, server.tmp, commands))
    received, applied = got["received"], got["applied"]
    p50, p99 = percentile(received, 0.5) * 1000, percentile(received, 0.99) * 1000
    a50, a99 = percentile(applied, 0.5) * 1000, percentile(applied, 0.99) * 1000
    baseline = got["baseline"]
    ratio = p99 / baseline if baseline else 0.0
    shape = f"{got['commands']} commands x {LISTENERS} listeners"
    print(f"{shape}: received p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"applied by {WITH_CACHE} caches: p50 {a50:.1f} ms, p99 {a99:.1f} ms")
    push50, first50 = percentile(got["pushes"], 0.5) * 1000, percentile(got["firsts"], 0.5) * 1000
    print(f"push round trip p50 {push50:.1f} ms; first listener p50 {first50:.1f} ms")
    print(f"/healthz round trip p50 {baseline:.2f} ms; missing {got['missing']}, "
          f"listener failures {got['failures']}, reconnects {got['reconnects']}")  # fmt: skip
    report(
        "sync_latency",
        value=p99,
        unit="ms",
        baseline=baseline,
        ratio=ratio,
        target=f"p99_ms<={TARGET_P99_MS:g}, missing==0",
        ok=p99 <= TARGET_P99_MS and got["missing"] == 0 and got["failures"] == 0,
        p50_ms=round(p50, 1),
        push_p50_ms=round(push50, 1),
        first_listener_p50_ms=round(first50, 1),
        applied_p50_ms=round(a50, 1),
        applied_p99_ms=round(a99, 1),
        commands=got["commands"],
        listeners=LISTENERS,
        missing=got["missing"],
        reconnects=got["reconnects"],
    )


if __name__ == "__main__":
    main()
