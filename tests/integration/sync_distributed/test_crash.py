"""Console processes SIGKILLed at random points while working and syncing, and restarted.

Two console processes (:mod:`tests.support.sync_worker`: the real cache and sync
engine, random counter work) are killed with SIGKILL over and over, at random
moments (some while still starting and opening their file), and restarted on the
same cache file; meanwhile the service itself is SIGKILLed and restarted once.
Each process reports every command right after it committed. In the end every
reported event is on the service exactly once at the ``device_seq`` it was given,
the only unreported ones are commits a kill cut off before they were reported,
every file passes ``PRAGMA integrity_check`` after every kill, and the consoles
converge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sync_distributed.conftest import Cluster, settle
from tests.integration.sync_engine.conftest import console
from tests.server.api_support import PASSWORD

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
ROUNDS = 11  # per console: 22 kills in all
READY_TIMEOUT_S = 60.0


@dataclass
class Run:
    """What one process said before it died (or finished)."""

    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def events(self) -> list[tuple[str, int]]:
        return [(e[0], e[1]) for line in self.lines for e in line.get("c", [])]

    @property
    def devices(self) -> set[str]:
        return {line["ready"] for line in self.lines if "ready" in line}

    def final(self) -> dict[str, Any]:
        done = [line for line in self.lines if "done" in line]
        assert done, f"no final line: {self.lines[-3:]}"
        return done[-1]


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


class Crasher:
    """Runs one console process after another on ``cache`` and kills each at random."""

    def __init__(self, cluster: Cluster, cache: Path, counter: str, seed: int) -> None:
        self.cluster, self.cache, self.counter = cluster, cache, counter
        self.rng = random.Random(seed)
        self.runs: list[Run] = []
        self.kills = 0
        self.checks: list[str] = []  # integrity_check after each kill
        self.errors = cache.with_suffix(".stderr")

    def stderr(self) -> str:
        return self.errors.read_text()[-3000:] if self.errors.exists() else ""

    def _spawn(self, *extra: str) -> tuple[subprocess.Popen[str], Run, threading.Thread]:
        command = [sys.executable, "-m", "tests.support.sync_worker"]
        command += ["--server", self.cluster.base_url, "--branch", self.cluster.branch_id]
        command += ["--cache", str(self.cache), "--counter", self.counter]
        command += ["--services", ",".join(self.cluster.services), "--password", PASSWORD]
        command += ["--seed", str(self.rng.randrange(1 << 30)), "--pace", "0.005", *extra]
        with self.errors.open("a") as errors:
            process = subprocess.Popen(
                command, cwd=REPO, stdout=subprocess.PIPE, stderr=errors, text=True
            )
        run = Run()

        def read() -> None:
            assert process.stdout is not None
            with process.stdout:
                for raw in process.stdout:
                    # A line cut short by the kill was never reported, so never promised.
                    with contextlib.suppress(json.JSONDecodeError):
                        run.lines.append(json.loads(raw))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        self.runs.append(run)
        return process, run, reader

    def crash_once(self) -> None:
        process, run, reader = self._spawn()
        if self.rng.random() < 0.2:
            time.sleep(self.rng.uniform(0.2, 1.5))  # maybe still importing or opening the file
        else:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not run.devices and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)  # polling a condition with a deadline
            assert run.devices, f"the console process did not start:\n{self.stderr()}"
            time.sleep(self.rng.uniform(0.0, 0.8))  # a random point of its work and sync
        process.send_signal(signal.SIGKILL)
        process.wait()
        reader.join()
        self.kills += 1
        if self.cache.exists():
            self.checks.append(integrity(self.cache))

    def finish(self, ops: int = 30) -> dict[str, Any]:
        """One run that is not killed: ``ops`` commands, then drain."""
        process, run, reader = self._spawn("--ops", str(ops), "--drain", "30")
        assert process.wait(90) == 0, f"{run.lines[-3:]}\n{self.stderr()}"
        reader.join()
        return run.final()


def test_consoles_killed_at_random_points_lose_and_repeat_nothing(
    sqlite_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = sqlite_cluster
    crashers = [
        Crasher(cluster, tmp_path / f"console{i}.sqlite3", cluster.counters[i], seed=100 + i)
        for i in range(2)
    ]

    def rounds(crasher: Crasher) -> None:
        crasher.finish(ops=5)  # a first sign-in and pull: the branch's services and counters
        for _ in range(ROUNDS):
            crasher.crash_once()

    with ThreadPoolExecutor(len(crashers)) as pool:
        running = [pool.submit(rounds, c) for c in crashers]
        time.sleep(random.Random(7).uniform(3.0, 6.0))  # then the service dies mid-work
        cluster.server.kill()
        cluster.server.start()
        for future in running:
            future.result()
    finals = [c.finish() for c in crashers]

    assert sum(c.kills for c in crashers) >= 20
    log = cluster.events()
    assert len({e.id for e in log}) == len(log)
    for crasher, final in zip(crashers, finals, strict=True):
        assert final["done"] is True
        assert final["outbox"] == 0
        assert set(crasher.checks) == {"ok"}
        assert integrity(crasher.cache) == "ok"
        devices = set().union(*(run.devices for run in crasher.runs))
        assert len(devices) == 1  # the file kept its identity through every crash
        device = devices.pop()

        reported = [e for run in crasher.runs for e in run.events]
        assert len({i for i, _ in reported}) == len(reported)  # no event committed twice
        assert len({s for _, s in reported}) == len(reported)  # no device_seq used twice
        stored = {e.id: e.device_seq for e in log if e.device_id == device}
        assert sorted(s or 0 for s in stored.values()) == list(range(1, len(stored) + 1))
        missing = [(i, s) for i, s in reported if stored.get(i) != s]
        assert missing == []  # everything reported is there, at the seq it was given

        # Events stored but never reported: commits a kill cut off before the line was
        # written. Each must sit between the last report of one run and the first of a
        # later one, i.e. at a kill, never in the middle of a run's reported work.
        unreported = sorted(s or 0 for i, s in stored.items() if i not in dict(reported))
        spans = [
            (min(s for _, s in r.events), max(s for _, s in r.events))
            for r in crasher.runs
            if r.events
        ]
        for seq in unreported:
            assert not any(low < seq < high for low, high in spans), seq
        assert len(unreported) <= 2 * crasher.kills  # a command writes at most two events
        assert sum(bool(r.events) for r in crasher.runs) > ROUNDS // 2  # killed while working

    async def converge() -> list[str]:
        async with (
            console(cluster.base_url, cluster.branch_id, crashers[0].cache) as a,
            console(cluster.base_url, cluster.branch_id, crashers[1].cache) as b,
            console(cluster.base_url, cluster.branch_id, tmp_path / "fresh.sqlite3") as fresh,
        ):
            await settle(a, b, fresh)
            return [c.cache.projection_hash() for c in (a, b, fresh)]

    assert len(set(asyncio.run(converge()))) == 1
