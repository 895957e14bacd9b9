"""A console killed at any moment reopens to a consistent cache with nothing lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from core import commands as cmd
from sync.client.cache import LocalCache
from tests.unit.sync.builders import ACCOUNTS, BRANCH, at

ROOT = Path(__file__).resolve().parents[3]

# Commands, pushes and pulls in a tight loop; after each commit, the device_seq of the
# last event written is printed, so the parent knows what must survive the kill.
WORKER = """
import sys
from pathlib import Path
import pytest

from core import commands as cmd
from core.events import TicketIssued, parse_event
from core.ids import uuid7
from sync.protocol import EventResult
from tests.unit.sync.builders import ACCOUNTS, BRANCH, C1, DAY, LOANS, at, open_cache, page

cache = open_cache(Path(sys.argv[1]), slot=int(sys.argv[2]))
if cache.counters()[0].status == "closed":
    cache.execute(cmd.OpenCounter(at=at(0), counter_id=C1))


def sync(n):
    # Another client's ticket, then our pending events as the service would accept them.
    cursor = cache.cursor()
    kiosk = TicketIssued(
        id=uuid7(), branch_id=BRANCH, occurred_at=at(n), ticket_id=str(uuid7()),
        service_id=LOANS, number=f"L{cursor % 7000 + 1}", business_day=DAY,
    )
    ours = [parse_event(body) for body in cache.pending()]
    events = list(enumerate([kiosk, *ours], start=cursor + 1))
    results = [EventResult(event_id=e.id, status="accepted", server_seq=s) for s, e in events[1:]]
    cache.apply_push_results(results)
    last = max((e.device_seq or 0 for e in ours), default=0)
    cache.apply_pull(page(events, last_device_seq=last))


n = 0
while True:
    n += 1
    current = cache.counters()[0].current_ticket_id
    if current is not None:  # killed between a call and its completion last time
        cache.execute(cmd.Complete(at=at(n), ticket_id=current))
    cache.issue_ticket(ACCOUNTS, at=at(n))
    called = cache.execute(cmd.CallNext(at=at(n), counter_id=C1))[0]
    print(called.device_seq, flush=True)
    done = cache.execute(cmd.Complete(at=at(n), ticket_id=called.ticket_id))
    print(done[-1].device_seq, flush=True)
    if n % 3 == 0:
        sync(n)
"""


def run_and_kill(directory: Path, slot: int, lines: int) -> int:
    """Start the worker, SIGKILL it after ``lines`` commits; the last seq it reported."""
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(directory), str(slot)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    last = 0
    try:
        for _ in range(lines):
            line = worker.stdout.readline()
            assert line, "the worker stopped before it was killed"
            last = int(line)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        worker.stdout.close()
    assert worker.returncode == -signal.SIGKILL
    return last


@pytest.mark.slow
def test_reopening_after_sigkill_mid_loop_gives_a_consistent_cache(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    for round_, lines in enumerate((25, 40, 33)):
        committed = run_and_kill(tmp_path, slot=5, lines=lines)

        cache = LocalCache.open(path, BRANCH)
        assert cache.repaired is False  # the projection always matched the log
        assert cache.integrity_check() == "ok"
        conn = sqlite3.connect(path)
        seqs = [s for (s,) in conn.execute("SELECT device_seq FROM outbox ORDER BY device_seq")]
        (next_seq,) = conn.execute("SELECT next_device_seq FROM device").fetchone()
        numbers = [n for (n,) in conn.execute("SELECT number FROM tickets")]
        conn.close()
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True
        assert next_seq > committed
        assert next_seq > max(seqs, default=0)
        assert len(numbers) == len(set(numbers))
        event = cache.issue_ticket(ACCOUNTS, at=at(500 + round_))
        assert event.device_seq == next_seq
        assert event.number not in numbers
        cache.execute(cmd.Cancel(at=at(500), ticket_id=event.ticket_id))
        cache.close()
