"""Authenticated queue work over HTTP against the real server, compared with ``/healthz``.

The central service runs under uvicorn in a subprocess on 127.0.0.1 with a
temporary SQLite database (the embedded default). 50 concurrent workers share
one long-lived httpx.AsyncClient: half issue tickets, half each work a counter
of their own (call-next, then complete what was called, so call-next keeps
finding work; a 409 "no tickets are waiting" is a valid answer).

value = authenticated requests/s of that mix; baseline = requests/s of the
unauthenticated ``/healthz`` with the same 50 workers in the same run;
ratio = value / baseline, target >= 0.35.

Latency (target p99 <= 50 ms) is measured in a third phase at a fixed offered
load: the same 50 clients, each paced so that together they send half the
throughput just measured. At saturation, latency only says how long the queue
of 50 waiting clients is (Little's law: 50 clients at R req/s wait 50/R s on
average, whatever the server does), so the saturated p99 is reported beside it
(``p99_saturated_ms``) but not judged. Latency is timed from each request's
scheduled start, so a client that falls behind is charged for it.

The client's own cyclic garbage collector is paused during each phase (as
``timeit`` does), after a collection: it is the measuring tool, not the service,
and its full collections (up to 150 ms measured, with every latency of the run
kept in lists) were charged to whichever requests were due meanwhile. The
service collects as it always does.

The error count covers every phase (anything but 2xx, or 409 from call-next;
target 0). ``ok`` only when all three targets hold.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

# httpcore imports sniffio on every request to learn the event loop; without it
# installed, each failed import searches sys.path and the client, not the server,
# becomes what is measured. A None entry makes that import fail at once.
if importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

import httpx
from _report import parse_args, report

WORKERS: Final = 50
COUNTERS: Final = WORKERS // 2  # one per counter worker; the demo brings three of them
TARGET_RATIO: Final = 0.35
TARGET_P99_MS: Final = 50.0
STARTUP_TIMEOUT_S: Final = 60.0
REPO: Final = Path(__file__).resolve().parent.parent


@dataclass
class Tally:
    """What one phase's workers saw."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    scheduled: float | None = None  # paced phases: when the current unit should have begun

    def note(self, started: float, status: int, *, valid: bool) -> None:
        # The first request of a paced unit is timed from when it should have begun.
        begun = min(started, self.scheduled) if self.scheduled is not None else started
        self.scheduled = None
        self.latencies_s.append(time.perf_counter() - begun)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if not valid:
            self.errors += 1

    def merge(self, other: Tally) -> None:
        self.latencies_s += other.latencies_s
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.errors += other.errors

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else 0.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEDESK_")}
    env["QUEUEDESK_DATA_DIR"] = str(data_dir)
    return env


def add_counters(data_dir: Path, branch_id: str, total: int) -> None:
    """Give the demo branch ``total`` counters, each calling from every service."""
    from sqlalchemy import select

    from server.config import Settings
    from server.db import make_engine, make_session_factory, session_scope
    from server.models import Branch, Counter, Service
    from server.services.branches import create_counter

    engine = make_engine(Settings(data_dir=data_dir).database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            branch = session.get(Branch, uuid.UUID(branch_id))
            assert branch is not None
            services = list(
                session.scalars(select(Service.id).where(Service.branch_id == branch.id))
            )
            numbers = set(
                session.scalars(select(Counter.number).where(Counter.branch_id == branch.id))
            )
            for number in range(1, total + 1):
                if number not in numbers:
                    name = f"Counter {number}"
                    create_counter(session, branch.tenant_id, branch.id, number, name, services)
    finally:
        engine.dispose()


def branch_ids(data_dir: Path, branch_id: str) -> tuple[list[str], list[str]]:
    """(service ids, counter ids) of the demo branch."""
    from sqlalchemy import select

    from server.config import Settings
    from server.db import make_engine, make_session_factory, session_scope
    from server.models import Counter, Service

    engine = make_engine(Settings(data_dir=data_dir).database_url)
    try:
        with session_scope(make_session_factory(engine, read_only=True)) as session:
            bid = uuid.UUID(branch_id)
            services = session.scalars(
                select(Service.id).where(Service.branch_id == bid).order_by(Service.code)
            )
            counters = session.scalars(
                select(Counter.id).where(Counter.branch_id == bid).order_by(Counter.number)
            )
            return [str(s) for s in services], [str(c) for c in counters]
    finally:
        engine.dispose()


@contextmanager
def running_server(data_dir: Path, log: Path) -> Any:
    port = free_port()
    command = [sys.executable, "-m", "server", "serve", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--log-level", "warning"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=server_env(data_dir),
            cwd=REPO,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with httpx.Client(base_url=base_url, timeout=2.0) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited:\n{log.read_text()}")
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready:\n{log.read_text()}")
                time.sleep(0.1)  # polling a condition with a deadline
        yield base_url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spread_phases(intervals: list[float]) -> list[float]:
    """When each paced worker starts: evenly over its own interval, per interval.

    Workers with the same interval are spread over the whole of it, so the offered
    load is even. Spreading all workers over one shared fraction instead (worker
    ``i`` of ``n`` at ``i / n`` of its interval) put the issuers in the first half
    of theirs and the counters in the second half of theirs: for a quarter of each
    counter interval the issuers and the counters overlapped and the offered load
    equalled the saturated throughput, so the measured tail was that burst's queue
    rather than the service at half load.
    """
    groups: dict[float, list[int]] = {}
    for index, every in enumerate(intervals):
        groups.setdefault(every, []).append(index)
    phases = [0.0] * len(intervals)
    for every, members in groups.items():
        for rank, index in enumerate(members):
            phases[index] = every * rank / len(members)
    return phases


async def run_phase(
    workers: list[Callable[[Tally], Awaitable[None]]],
    seconds: float,
    intervals: list[float] | None = None,
) -> Tally:
    """Run every worker in a loop for ``seconds``; the tally of what they saw.

    With ``intervals`` each worker starts a unit of work every ``intervals[i]``
    seconds (open loop) instead of as soon as the last one ended.
    """
    tally = Tally()
    phases = spread_phases(intervals) if intervals else [0.0] * len(workers)
    gc.collect()
    gc.disable()
    started = time.perf_counter()
    stop_at = started + seconds

    async def loop(index: int, work: Callable[[Tally], Awaitable[None]]) -> None:
        mine = Tally()
        every = intervals[index] if intervals else 0.0
        next_at = started + phases[index]
        while time.perf_counter() < stop_at:
            if every:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                mine.scheduled = next_at
                next_at += every
            await work(mine)
        tally.merge(mine)

    try:
        await asyncio.gather(*(loop(i, w) for i, w in enumerate(workers)))
    finally:
        gc.enable()
    return tally


Work = Callable[[Tally], Awaitable[None]]


async def post(
    tally: Tally, client: httpx.AsyncClient, url: str, valid: set[int], **kw: Any
) -> Any:
    """POST and tally it; the JSON body of a 2xx answer, else None."""
    started = time.perf_counter()
    try:
        response = await client.post(url, **kw)
    except httpx.HTTPError:
        tally.note(started, 0, valid=False)
        return None
    tally.note(started, response.status_code, valid=response.status_code in valid)
    return response.json() if response.is_success else None


def healthz(client: httpx.AsyncClient) -> Work:
    async def work(tally: Tally) -> None:
        started = time.perf_counter()
        try:
            response = await client.get("/healthz")
        except httpx.HTTPError:
            tally.note(started, 0, valid=False)
            return
        tally.note(started, response.status_code, valid=response.status_code == 200)

    return work


def issuer(client: httpx.AsyncClient, branch_id: str, services: list[str], index: int) -> Work:
    """Issue tickets round-robin over the services; every tenth one a priority ticket."""
    url = f"/api/v1/branches/{branch_id}/tickets"
    issued = index

    async def work(tally: Tally) -> None:
        nonlocal issued
        issued += 1
        body = {
            "service_id": services[issued % len(services)],
            "channel": "walk_in",
            "priority": "priority" if issued % 10 == 0 else "normal",
        }
        await post(tally, client, url, {201}, json=body)

    return work


def counter(client: httpx.AsyncClient, counter_id: str) -> Work:
    """Call the next ticket at one counter and complete it; an empty queue is a 409."""

    async def work(tally: Tally) -> None:
        called = await post(tally, client, f"/api/v1/counters/{counter_id}/call-next", {200, 409})
        if called is not None:
            await post(tally, client, f"/api/v1/tickets/{called['id']}/complete", {200})

    return work


async def login(client: httpx.AsyncClient, tenant: str, username: str, password: str) -> str:
    body = {"tenant": tenant, "username": username, "password": password}
    response = await client.post("/api/v1/auth/login", json=body)
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


async def measure(
    base_url: str, demo: dict[str, Any], services: list[str], counters: list[str], seconds: float
) -> tuple[Tally, float, Tally, float, Tally]:
    """Warm up, then time /healthz and the ticket mix, each with WORKERS clients."""
    async with AsyncExitStack() as stack:
        plain = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=base_url, timeout=30.0))
            for _ in range(WORKERS)
        ]
        users, tenant = demo["users"], demo["tenant"]
        issuer_token = await login(plain[0], tenant, "admin", users["admin"])  # reception
        staff_token = await login(plain[0], tenant, "staff1", users["staff1"])
        issuers = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url,
                    timeout=30.0,
                    headers={"Authorization": f"Bearer {issuer_token}"},
                )
            )
            for _ in range(WORKERS - COUNTERS)
        ]
        staff = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url,
                    timeout=30.0,
                    headers={"Authorization": f"Bearer {staff_token}"},
                )
            )
            for _ in range(COUNTERS)
        ]
        for counter_id in counters:
            (await staff[0].post(f"/api/v1/counters/{counter_id}/open")).raise_for_status()
        health_work = [healthz(c) for c in plain]
        branch_id = demo["branch_id"]
        mix_work = [issuer(c, branch_id, services, i) for i, c in enumerate(issuers)]
        mix_work += [counter(c, k) for c, k in zip(staff, counters, strict=True)]
        warm_up = min(2.0, seconds / 4)  # connections, caches, the branch state
        await run_phase(health_work, warm_up)
        await run_phase(mix_work, warm_up)
        started = time.perf_counter()
        health = await run_phase(health_work, seconds)
        health_s = time.perf_counter() - started
        started = time.perf_counter()
        mix = await run_phase(mix_work, seconds)
        mix_s = time.perf_counter() - started
        # Half the measured throughput, shared out: an issuer sends one request per
        # unit, a counter about two (call-next, then complete).
        rate = 0.5 * len(mix.latencies_s) / mix_s
        per_unit = [1.0] * len(issuers) + [2.0] * len(staff)
        intervals = [n * len(mix_work) / rate for n in per_unit]
        paced = await run_phase(mix_work, seconds, intervals)
        return health, health_s, mix, mix_s, paced


def main() -> None:
    args = parse_args(__doc__ or "")
    seconds = 5.0 if args.quick else 20.0
    with tempfile.TemporaryDirectory(prefix="queuedesk-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        demo_run = subprocess.run(
            [sys.executable, "-m", "server", "demo", "--json"],
            env=server_env(data_dir),
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        demo = json.loads(demo_run.stdout.strip().splitlines()[-1])
        add_counters(data_dir, demo["branch_id"], COUNTERS)
        services, counters = branch_ids(data_dir, demo["branch_id"])
        log = Path(tmp) / "server.log"
        with running_server(data_dir, log) as (base_url, _pid):
            health, health_s, mix, mix_s, paced = asyncio.run(
                measure(base_url, demo, services, counters, seconds)
            )
        if mix.errors or health.errors or paced.errors:
            print(f"server log (last lines):\n{log.read_text(errors='replace')[-3000:]}")
    baseline = len(health.latencies_s) / health_s
    value = len(mix.latencies_s) / mix_s
    ratio = value / baseline if baseline else 0.0
    p99 = paced.p99_ms()
    errors = mix.errors + health.errors + paced.errors
    print(f"/healthz: {baseline:,.0f} req/s, p99 {health.p99_ms():.1f} ms ({WORKERS} workers)")
    statuses = dict(sorted(mix.statuses.items()))
    print(f"tickets mix: {value:,.0f} req/s, p99 {mix.p99_ms():.1f} ms, statuses {statuses}")
    paced_rate = len(paced.latencies_s) / seconds
    print(f"paced at half of that ({paced_rate:,.0f} req/s): p99 {p99:.1f} ms")
    print(f"ratio {ratio:.3f} (target >= {TARGET_RATIO}), errors {errors}")
    report(
        "api_throughput",
        value=value,
        unit="requests_per_s",
        baseline=baseline,
        ratio=ratio,
        target=f"ratio>={TARGET_RATIO}, p99_ms<={TARGET_P99_MS:g}, errors==0",
        ok=ratio >= TARGET_RATIO and p99 <= TARGET_P99_MS and errors == 0,
        p99_ms=round(p99, 1),
        p99_saturated_ms=round(mix.p99_ms(), 1),
        paced_requests_per_s=round(paced_rate, 1),
        healthz_p99_ms=round(health.p99_ms(), 1),
        errors=errors,
        workers=WORKERS,
        seconds=seconds,
    )


if __name__ == "__main__":
    main()
