"""Chaos: consoles work while a nemesis kills, pauses and cuts; afterwards nothing is lost.

The service runs as a real ``queuedesk-server serve`` process on a temporary
SQLite database (:class:`tests.support.sync_cluster.ServerProcess`, restartable on
its port), seeded with one branch, services "B" and "C" and a counter per console.
Each console is a process of its own (:mod:`tests.support.sync_worker`: the real
cache file and sync engine, random counter work, every committed command
reported on stdout at once) talking to the service through its own
:class:`tests.support.faultproxy.FaultProxy`.

For a bounded time a nemesis, every 0.3-1.5 s, does one of: SIGKILL a console and
start it again on the same file; SIGKILL the service and restart it; SIGSTOP the
service or a console for a while, then SIGCONT; cut a console's link for a while;
add latency to a link for a while; reset a link's connections. Then everything is
healed, the consoles stop working and drain their outboxes, and the run is
checked against the service's database and every cache file:

- lost: events a console reported committed that the service does not hold at
  that ``device_seq``, plus holes in a device's ``device_seq`` run on the service;
- duplicated: event ids or (device, device_seq) pairs held twice by the service,
  and events a console reported committing twice;
- diverged: consoles whose projection, once pulled to the head, differs from a
  fresh console's built from the service's log (a file failing
  ``PRAGMA integrity_check`` counts too).

value = lost + duplicated + diverged (target 0); baseline = commands the consoles
completed in the same run; ratio = value / baseline. The line also reports the
longest time an outbox stayed stuck while its engine was online
(``SyncStats.longest_stuck_s``, the max over every console process).
``--quick``: 5 consoles for 20 s; otherwise 8 consoles for 120 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from _report import parse_args, report

from server.config import sqlite_url
from server.migrate import upgrade
from sync.client.api import SyncApi
from sync.client.auth import AuthSession
from sync.client.backoff import Backoff
from sync.client.cache import LocalCache
from sync.client.credentials import MemoryCredentialStore
from sync.client.engine import SyncEngine
from tests.server.api_support import PASSWORD, TENANT
from tests.support.faultproxy import FaultProxy
from tests.support.sync_cluster import Branch, ServerProcess, seed_branch, server_events

REPO: Final = Path(__file__).resolve().parents[1]
DRAIN_S: Final = 90.0  # a console has this long to drain once the faults are healed
SEED: Final = 20240604
FAULTS: Final = (
    "kill_console",
    "kill_server",
    "pause_console",
    "pause_server",
    "cut",
    "delay",
    "reset",
)


@dataclass
class Run:
    """One console process and what it said."""

    process: subprocess.Popen[str]
    lines: list[dict[str, Any]] = field(default_factory=list)
    reader: threading.Thread | None = None

    def events(self) -> list[tuple[str, int]]:
        return [(e[0], e[1]) for line in list(self.lines) for e in line.get("c", [])]

    def longest_stuck_s(self) -> float:
        stats = [line.get("stats", {}) for line in list(self.lines) if "stats" in line]
        return max((s.get("longest_stuck_s", 0.0) for s in stats), default=0.0)


class Console:
    """One console slot: its cache file and link, and every process run on them."""

    def __init__(
        self, index: int, tmp: Path, server: ServerProcess, branch: Branch, until: float
    ) -> None:
        self.index, self.until, self.branch = index, until, branch
        self.cache = tmp / f"console{index}.sqlite3"
        self.link = FaultProxy("127.0.0.1", server.port).start()
        self.runs: list[Run] = []
        self.rng = random.Random(SEED + index)
        self.paused = False

    @property
    def current(self) -> Run:
        return self.runs[-1]

    def alive(self) -> bool:
        return bool(self.runs) and self.current.process.poll() is None

    def start(self) -> None:
        command = [sys.executable, "-m", "tests.support.sync_worker", "--server", self.link.url]
        command += ["--branch", self.branch.branch_id, "--cache", str(self.cache)]
        command += ["--counter", self.branch.counters[self.index]]
        command += ["--services", ",".join(self.branch.services), "--password", PASSWORD]
        command += ["--seed", str(self.rng.randrange(1 << 30)), "--until", str(self.until)]
        command += ["--pace", "0.02", "--drain", str(DRAIN_S)]
        log = self.cache.with_suffix(".stderr").open("a")
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        run = Run(process)

        def read() -> None:
            assert process.stdout is not None
            with process.stdout:
                for raw in process.stdout:
                    with contextlib.suppress(json.JSONDecodeError):  # cut short by a kill
                        run.lines.append(json.loads(raw))

        run.reader = threading.Thread(target=read, daemon=True)
        run.reader.start()
        self.runs.append(run)

    def kill(self) -> None:
        if self.alive():
            self.current.process.send_signal(signal.SIGCONT)
            self.current.process.kill()
            self.current.process.wait()
        self.paused = False

    def pause(self, on: bool) -> None:
        if self.alive():
            self.current.process.send_signal(signal.SIGSTOP if on else signal.SIGCONT)
            self.paused = on

    def wait(self, timeout: float) -> int | None:
        try:
            code = self.current.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self.current.reader is not None:
            self.current.reader.join()
        return code


class Nemesis:
    """Random faults until the deadline; each timed fault is undone when it is due."""

    def __init__(
        self, server: ServerProcess, consoles: list[Console], until: float, quick: bool
    ) -> None:
        self.server, self.consoles, self.until = server, consoles, until
        self.rng = random.Random(SEED)
        self.undo: list[tuple[float, str, Any]] = []
        self.faults: Counter[str] = Counter()
        self.server_paused = False
        self.server_kills_left = 2 if quick else 6  # each restart takes seconds
        self.deck: list[str] = []

    def run(self) -> None:
        while time.time() < self.until:
            self._undo_due(time.time())
            self._one_fault()
            pause = self.rng.uniform(0.3, 1.5)
            end = min(time.time() + pause, self.until)
            while time.time() < end:
                self._undo_due(time.time())
                time.sleep(0.05)  # the nemesis's own pace
        self.heal()

    def _one_fault(self) -> None:
        rng, now = self.rng, time.time()
        target = rng.choice(self.consoles)
        if not self.deck:  # every kind of fault once per deck, in a random order
            self.deck = [*FAULTS, "kill_console"]  # the one the issue is about, twice
            rng.shuffle(self.deck)
        kind = self.deck.pop()
        if kind == "kill_server" and not self.server_kills_left:
            kind = "kill_console"
        if kind == "kill_console":
            target.kill()
            target.start()
        elif kind == "pause_console" and not target.paused:
            target.pause(True)
            self.undo.append((now + rng.uniform(0.5, 3.0), "resume_console", target))
        elif kind == "cut" and not target.link.is_cut:
            target.link.cut()
            self.undo.append((now + rng.uniform(0.5, 4.0), "heal", target))
        elif kind == "delay":
            target.link.delay(rng.uniform(0.05, 0.4))
            self.undo.append((now + rng.uniform(1.0, 4.0), "undelay", target))
        elif kind == "reset":
            target.link.reset_connections()
        elif kind == "pause_server" and not self.server_paused:
            self.server.pause()
            self.server_paused = True
            self.undo.append((now + rng.uniform(0.5, 2.5), "resume_server", None))
        elif kind == "kill_server":
            self.server_kills_left -= 1
            self.server.kill()
            self.server_paused = False
            self.server.start()
        else:
            return
        self.faults[kind] += 1

    def _undo_due(self, now: float) -> None:
        due = [u for u in self.undo if u[0] <= now]
        self.undo = [u for u in self.undo if u[0] > now]
        for _, action, target in due:
            self._apply(action, target)

    def _apply(self, action: str, target: Any) -> None:
        if action == "resume_console":
            target.pause(False)
        elif action == "heal":
            target.link.heal()
        elif action == "undelay":
            target.link.delay(0.0)
        elif action == "resume_server":
            self.server.resume()
            self.server_paused = False

    def heal(self) -> None:
        for _, action, target in self.undo:
            self._apply(action, target)
        self.undo = []
        self.server.resume()
        self.server_paused = False
        if not self.server.running:
            self.server.start()
        for console in self.consoles:
            console.link.clear_faults()
            console.pause(False)
            if not console.alive() and (console.current.process.returncode or 0) < 0:
                console.start()  # killed last: it only drains (its --until has passed)


async def synced_hash(base_url: str, branch_id: str, path: Path) -> tuple[str, int]:
    """The projection hash of the cache at ``path`` once pulled to the head, and its outbox."""
    cache = LocalCache.open(path, branch_id)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30.0, trust_env=False) as http:
            session = AuthSession(http, MemoryCredentialStore())
            await session.login(TENANT, "staff1", PASSWORD, device_id=uuid.UUID(cache.device_id))
            api = SyncApi(http, session, attempts=3, backoff=Backoff(base=0.1, cap=1.0))
            await SyncEngine(cache, api, branch_id).sync_once()
        return cache.projection_hash(), cache.outbox_size()
    finally:
        cache.close()


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def check(
    server: ServerProcess, branch: Branch, consoles: list[Console], tmp: Path
) -> dict[str, Any]:
    log = server_events(server.database_url, branch.branch_id)
    ids = Counter(e.id for e in log)
    pairs = Counter((e.device_id, e.device_seq) for e in log if e.device_id)
    duplicated = sum(n - 1 for n in ids.values()) + sum(n - 1 for n in pairs.values())
    stored = {e.id: (e.device_id, e.device_seq) for e in log}
    lost, ops, events, devices = 0, 0, 0, set()
    for console in consoles:
        reported = [e for run in console.runs for e in run.events()]
        ops += sum(1 for run in console.runs for line in list(run.lines) if "c" in line)
        events += len(reported)
        seen = Counter(i for i, _ in reported)
        duplicated += sum(n - 1 for n in seen.values())
        device_ids = {
            line["ready"] for run in console.runs for line in run.lines if "ready" in line
        }
        devices |= device_ids
        lost += sum(1 for i, seq in reported if stored.get(i, (None, None))[1] != seq)
        lost += len(device_ids) - 1 if device_ids else 0  # a crash must not change identity
    for device in devices:
        seqs = sorted(s or 0 for d, s in pairs if d == device)
        lost += (seqs[-1] - len(set(seqs))) if seqs else 0  # holes in the run 1..max

    async def hashes() -> tuple[str, list[tuple[str, int]]]:
        fresh, _ = await synced_hash(server.base_url, branch.branch_id, tmp / "fresh.sqlite3")
        mine = [await synced_hash(server.base_url, branch.branch_id, c.cache) for c in consoles]
        return fresh, mine

    fresh, mine = asyncio.run(hashes())
    corrupt = sum(integrity(c.cache) != "ok" for c in consoles)
    diverged = sum(h != fresh for h, _ in mine) + corrupt
    return {
        "ops": ops,
        "events": events,
        "lost": lost,
        "duplicated": duplicated,
        "diverged": diverged,
        "corrupt": corrupt,
        "undrained": sum(n for _, n in mine),
        "rejected": sum(1 for e in log if e.status == "rejected"),
        "rejected_by_type": dict(Counter(e.type for e in log if e.status == "rejected")),
        "stored": len(log),
    }


def main() -> None:
    args = parse_args(__doc__.split("\n", 1)[0])
    n_consoles, work_s = (5, 20.0) if args.quick else (8, 120.0)
    with tempfile.TemporaryDirectory(prefix="queuedesk-chaos-") as name:
        tmp = Path(name)
        url = sqlite_url(tmp / "server.db")
        upgrade(url)
        branch = seed_branch(url, counters=n_consoles)
        env = {**os.environ, "QUEUEDESK_DATA_DIR": str(tmp / "data")}
        env["QUEUEDESK_SYNC_HEARTBEAT_S"] = "1.0"
        server = ServerProcess(url, tmp, env=env).start()
        consoles: list[Console] = []
        try:
            until = time.time() + work_s
            consoles = [Console(i, tmp, server, branch, until) for i in range(n_consoles)]
            for console in consoles:
                console.start()
            nemesis = Nemesis(server, consoles, until, args.quick)
            nemesis.run()
            healed = time.monotonic()
            codes = [c.wait(DRAIN_S + 30.0) for c in consoles]
            drain_s = time.monotonic() - healed
            outcome = check(server, branch, consoles, tmp)
        finally:
            for console in consoles:
                console.kill()
                console.link.stop()
            server.stop()
    stuck = max((run.longest_stuck_s() for c in consoles for run in c.runs), default=0.0)
    value = outcome["lost"] + outcome["duplicated"] + outcome["diverged"]
    baseline = outcome["ops"]
    report(
        "sync_chaos",
        value=value,
        unit="lost+duplicated+diverged events",
        baseline=baseline,
        ratio=value / baseline if baseline else 0.0,
        target=0,
        ok=value == 0
        and baseline > 0
        and outcome["undrained"] == 0
        and codes.count(0) == len(codes),
        consoles=n_consoles,
        work_s=work_s,
        faults=dict(nemesis.faults),
        console_runs=sum(len(c.runs) for c in consoles),
        drain_s=round(drain_s, 1),
        exit_codes=codes,
        longest_stuck_s=round(stuck, 2),
        **outcome,
    )


if __name__ == "__main__":
    main()
