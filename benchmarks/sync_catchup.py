"""How fast a console's cache catches up with the central service's event log.

The service runs under uvicorn on a temporary SQLite database with 20 counters
(helpers in ``sync_ingest.py``). Other devices push a realistic day's events
(issue, call, start, complete; generated beforehand with ``core.machine.decide``)
in batches of 500, untimed. A console's cache (:class:`sync.client.cache.LocalCache`)
pulls with :class:`sync.client.api.SyncApi`, page by page (``DEFAULT_PULL_LIMIT``
events, reference data only when its version changed), and applies each page
with ``LocalCache.apply_pull`` until ``has_more`` is false: the sync engine's own
loop, :func:`sync.client.engine.pull_to_head`, which asks for the next page
before it applies the current one.

(a) catch-up: a console that was offline while 16,000 events were pushed
    (4,000 with ``--quick``). value = seconds until it has converged, target <= 5 s.
(b) initial sync: a new device's empty cache pulls the whole log of 100,000 events
    (20,000 with ``--quick``); reported as events/s, target >= 30,000 events/s.
    As the engine does for an empty cache, the first page asks for the branch's
    state: the cache stores the events without folding them and starts from the
    service's fold once it holds them all (``LocalCache.apply_pull``). The time
    includes the service encoding the state and the cache loading it and writing
    every ticket's row.

Before each timed phase the objects of the setup (the pusher's workload, the
other caches) are frozen out of the cyclic collector's sight (``set_aside_setup``):
a console's process holds none of them.

Convergence is checked, untimed: a second cache followed along (pulling after
every pushed batch) and both caches must end with the same ``projection_hash()``.

Baseline: the same pages pulled over HTTP and parsed into ``PullResponse`` without
being applied (pure transfer and JSON parsing), in the same run. For (a)
baseline = that time in seconds and ratio = baseline time / value time (the
share of the catch-up spent on the wire; 1.0 would mean applying is free); for
(b) the same ratio is reported as ``initial_ratio`` (= value rate / baseline rate).
``ok`` when both targets hold and both caches converged.

Pages that touch many tickets leave the tickets' KPI facts for later (the sync
engine writes them while idle; a report first writes what is left). The time to
write them after each pull is printed and in the JSON line (``catchup_facts_s``,
``initial_facts_s``), outside the figures above.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from pathlib import Path
from typing import Final

import httpx
from _report import parse_args, report
from sync_ingest import BATCH, Server, demo_server, login, new_workload, push_all, push_body

from sync.client.api import SyncApi
from sync.client.auth import AuthSession
from sync.client.cache import LocalCache
from sync.client.credentials import MemoryCredentialStore
from sync.client.engine import pull_to_head

COUNTERS: Final = 20
TARGET_CATCHUP_S: Final = 5.0
TARGET_INITIAL_RATE: Final = 30_000.0
DEVICES: Final = 4  # other consoles taking turns to push


async def catch_up(api: SyncApi, cache: LocalCache) -> tuple[float, int]:
    """Pull and apply pages until the head, as the sync engine does; (seconds, events)."""
    branch, device = uuid.UUID(cache.branch_id), uuid.UUID(cache.device_id)
    started = time.perf_counter()
    applied = await pull_to_head(api, cache, branch, device)
    return time.perf_counter() - started, applied


async def transfer_only(api: SyncApi, cache: LocalCache, after: int, ref: str | None) -> float:
    """Seconds for ``cache``'s device to pull the same pages from ``after``, not applied."""
    branch, device = uuid.UUID(cache.branch_id), uuid.UUID(cache.device_id)
    started = time.perf_counter()
    while True:
        page = await api.pull(branch, after, device_id=device, ref_version=ref)
        after = page.cursor
        if not page.has_more:
            return time.perf_counter() - started


def set_aside_setup() -> None:
    """Move what exists now out of the cyclic collector's sight, before a timed phase.

    This process also holds what a console's would not: the pusher's workload and
    the other caches of the run (the follower alone folds the whole log). Every
    full collection during a timed pull walks all of it: timed with
    ``gc.callbacks``, a first sync of 30,000 events spent 0.28-0.39 s of its
    1.8-2.5 s in full collections, and 0.03-0.05 s with the setup set aside. That
    is a cost of the benchmark's setup, not of the cache being measured, whose
    own objects stay in the collector's sight as they grow.
    """
    gc.collect()
    gc.freeze()


def flush_facts(cache: LocalCache) -> float:
    """Seconds to write the KPI facts the bulk pages left for later (see kpi_store)."""
    started = time.perf_counter()
    cache.flush_facts()
    return time.perf_counter() - started


class Pusher:
    """Other devices pushing the workload in batches, with a cache following along."""

    def __init__(self, server: Server, token: str, user_id: str) -> None:
        self.server, self.token = server, token
        self.workload = new_workload(server, token, actor_id=user_id)
        self.devices = [self.workload.device_id] + [str(uuid.uuid4()) for _ in range(DEVICES - 1)]
        self.batches = 0
        self.client = httpx.Client(base_url=server.base_url, timeout=120.0)

    async def push(self, events: int, api: SyncApi, follower: LocalCache) -> int:
        """Push ``events`` more events; the follower pulls after each batch. HTTP failures."""
        failed = 0
        for _ in range(events // BATCH):
            device = self.workload.device_id = self.devices[self.batches % DEVICES]
            self.batches += 1
            body = push_body(self.server, device, self.workload.events(BATCH))
            _, answers, bad = push_all(self.client, [body], [device], self.token)
            failed += bad + sum(r.status != "accepted" for a in answers for r in a.results)
            await catch_up(api, follower)
        return failed


async def measure(server: Server, tmp: Path, backlog: int, total: int) -> dict[str, float]:
    token, user_id = login(server)
    store = MemoryCredentialStore()
    demo, branch_id = server.demo, server.branch_id
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0) as client:
        session = AuthSession(client, store)
        await session.login(demo["tenant"], "staff1", demo["users"]["staff1"])
        api = SyncApi(client, session)
        behind = LocalCache.open(tmp / "behind.sqlite3", branch_id)
        follower = LocalCache.open(tmp / "follower.sqlite3", branch_id)
        newcomer = LocalCache.open(tmp / "new.sqlite3", branch_id)
        pusher = Pusher(server, token, user_id)
        try:
            failed = await pusher.push(BATCH, api, follower)  # counters open, a first batch
            await catch_up(api, behind)
            start = behind.cursor()
            failed += await pusher.push(backlog, api, follower)
            ref = behind.reference_version()
            set_aside_setup()
            base_a = await transfer_only(api, behind, start, ref)
            catchup_s, caught = await catch_up(api, behind)
            catchup_facts_s = flush_facts(behind)
            same_a = behind.projection_hash() == follower.projection_hash()
            failed += await pusher.push(total - follower.cursor(), api, follower)
            set_aside_setup()
            base_b = await transfer_only(api, newcomer, 0, None)
            initial_s, pulled = await catch_up(api, newcomer)
            initial_facts_s = flush_facts(newcomer)
            same_b = newcomer.projection_hash() == follower.projection_hash()
        finally:
            pusher.client.close()
            for cache in (behind, follower, newcomer):
                cache.close()
    return {
        "catchup_s": catchup_s,
        "catchup_events": caught,
        "catchup_baseline_s": base_a,
        "catchup_facts_s": catchup_facts_s,
        "initial_facts_s": initial_facts_s,
        "initial_s": initial_s,
        "initial_events": pulled,
        "initial_baseline_s": base_b,
        "converged": same_a and same_b,
        "push_errors": failed,
    }


def main() -> None:
    args = parse_args(__doc__ or "")
    backlog, total = (4_000, 20_000) if args.quick else (16_000, 100_000)
    with demo_server(counters=COUNTERS) as server:
        got = asyncio.run(measure(server, server.tmp, backlog, total))
    catchup_s, base_a = got["catchup_s"], got["catchup_baseline_s"]
    rate = got["initial_events"] / got["initial_s"]
    base_rate = got["initial_events"] / got["initial_baseline_s"]
    ratio = base_a / catchup_s
    print(f"(a) catch-up of {got['catchup_events']:,} events: {catchup_s:.2f} s "
          f"(pull only {base_a:.2f} s), ratio {ratio:.3f}")  # fmt: skip
    print(f"(b) initial sync of {got['initial_events']:,} events: {rate:,.0f} events/s "
          f"in {got['initial_s']:.2f} s (pull only {base_rate:,.0f} events/s)")  # fmt: skip
    print(f"KPI facts the pulls left for later, written afterwards: (a) "
          f"{got['catchup_facts_s']:.2f} s, (b) {got['initial_facts_s']:.2f} s (not in the figures "
          "above: the console is current once pulled; reports write them first)")  # fmt: skip
    print(f"converged {got['converged']}, push errors {got['push_errors']}")
    ok = (
        catchup_s <= TARGET_CATCHUP_S
        and rate >= TARGET_INITIAL_RATE
        and bool(got["converged"])
        and got["push_errors"] == 0
    )
    report(
        "sync_catchup",
        value=catchup_s,
        unit="s",
        baseline=base_a,
        ratio=ratio,
        target=f"catchup_s<={TARGET_CATCHUP_S:g}, initial_events_per_s>={TARGET_INITIAL_RATE:g}",
        ok=ok,
        catchup_events=got["catchup_events"],
        initial_events_per_s=round(rate, 1),
        initial_baseline_events_per_s=round(base_rate, 1),
        initial_ratio=round(rate / base_rate, 3),
        initial_events=got["initial_events"],
        catchup_facts_s=round(got["catchup_facts_s"], 3),
        initial_facts_s=round(got["initial_facts_s"], 3),
        converged=got["converged"],
        push_errors=got["push_errors"],
    )


if __name__ == "__main__":
    main()
