"""A console without a screen, as a process of its own: random work on a cache, synced.

Run as ``python -m tests.support.sync_worker --server URL --branch ID --cache FILE
--counter ID --services ID,ID ...``. It opens the cache file (creating it the first
time, reopening it after a crash), starts the real :class:`~sync.client.thread.SyncThread`
(a :class:`~sync.client.engine.SyncEngine` on its own thread, signing in lazily, so
it starts even while the service is down) and plays :class:`~tests.support.sync_work.RandomWork`
at one counter until ``--until`` (a wall-clock time) or ``--ops`` commands. Then,
with ``--drain S``, it waits up to S seconds for the outbox to drain and the cache
to be pulled to the head, and exits 0 if that happened.

Crash tests and the chaos benchmark kill it with SIGKILL at any moment, so it says
everything as it happens, one JSON object per line on stdout, flushed:

- ``{"ready": DEVICE_ID}`` once the engine runs;
- ``{"c": [[event_id, device_seq, type], ...]}`` right after each local command
  *committed* (its events are in the file's outbox): what the harness holds the
  client to (a kill between the commit and this line can leave one command
  unreported, never the other way round);
- ``{"stats": {...}}`` twice a second: the engine's counters, its state, the outbox;
- ``{"done": true|false, "hash": ..., "outbox": N, ...}`` at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sync.client.backoff import Backoff
from sync.client.cache import LocalCache
from sync.client.engine import EngineSettings
from sync.client.thread import SyncConfig, SyncThread, password_sign_in
from tests.support.sync_work import RandomWork, utc_now

SETTINGS = EngineSettings(
    poll_interval_s=1.0,
    idle_check_s=30.0,
    stuck_after_s=5.0,
    retry_backoff=Backoff(base=0.05, cap=0.5),
    stream_backoff=Backoff(base=0.05, cap=0.5),
)
STATS_EVERY_S = 0.5


def say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server", required=True, help="base URL of the service (or a proxy)")
    parser.add_argument("--branch", required=True)
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--counter", required=True)
    parser.add_argument("--services", required=True, help="comma-separated service ids")
    parser.add_argument("--tenant", default="acme")
    parser.add_argument("--username", default="staff1")
    parser.add_argument("--password", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--until", type=float, default=0.0, help="stop working at this time.time()")
    parser.add_argument("--ops", type=int, default=0, help="stop after this many commands")
    parser.add_argument("--pace", type=float, default=0.01, help="seconds between commands")
    parser.add_argument("--drain", type=float, default=0.0, help="then wait this long to sync")
    parser.add_argument("--skew-s", type=float, default=0.0, help="this console's clock error")
    parser.add_argument("--http-timeout", type=float, default=3.0)
    return parser.parse_args(argv)


def stats_of(sync: SyncThread) -> dict[str, Any]:
    stats = dataclasses.asdict(sync.stats)
    stats["state"] = sync.state.value
    return stats


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cache = LocalCache.open(args.cache, args.branch)
    config = SyncConfig(
        server_url=args.server,
        tenant=args.tenant,
        branch_id=args.branch,
        cache_path=args.cache,
        session_factory=password_sign_in(
            args.tenant, args.username, args.password, device_id=cache.device_id
        ),
        settings=SETTINGS,
        http_timeout_s=args.http_timeout,
        trust_env=False,
        api_attempts=2,
    )
    skew = timedelta(seconds=args.skew_s)

    def clock() -> datetime:
        return utc_now() + skew

    work = RandomWork(
        cache, random.Random(args.seed), args.counter, tuple(args.services.split(",")), clock=clock
    )
    sync = SyncThread(config, cache=cache).start()
    say(ready=cache.device_id)
    ops, next_stats = 0, 0.0
    try:
        while (not args.ops or ops < args.ops) and (not args.until or time.time() < args.until):
            events = work.step()
            if events:
                ops += 1
                say(c=[[str(e.id), e.device_seq, getattr(e, "type", "")] for e in events])
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + STATS_EVERY_S
                say(stats=stats_of(sync), outbox=cache.outbox_size())
            time.sleep(args.pace)
        drained = True
        if args.drain > 0:
            try:
                sync.wait_idle(args.drain)
            except TimeoutError as exc:
                drained = False
                say(error=str(exc))
        say(
            done=drained,
            ops=ops,
            refused=work.refused,
            kinds=work.done,
            outbox=cache.outbox_size(),
            hash=cache.projection_hash(),
            stats=stats_of(sync),
        )
        return 0 if drained else 1
    finally:
        sync.stop(10.0)
        cache.close()


if __name__ == "__main__":
    sys.exit(main())
