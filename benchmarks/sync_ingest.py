"""How fast the central service takes a console's outbox through ``POST /sync/push``.

The service runs under uvicorn in a subprocess on a temporary SQLite database
(see ``api_throughput.py``). One device pushes its events in order, in batches
of 500, as a console's sync engine does. The events are a realistic day's work,
generated beforehand (untimed) with :func:`core.machine.decide` on a local copy
of the branch state: tickets issued round-robin over the services, then called,
started and completed at 10 counters, each stamped with the device's id and a
contiguous ``device_seq``. The request bodies are encoded before the clock starts.

value = events/s accepted (50,000 events; 10,000 with ``--quick``);
baseline = rows/s of a plain SQLAlchemy Core bulk insert
(``session.execute(insert(QueueEvent), rows)``, one transaction per 500 rows) of
the same log rows into a copy of the same SQLite file, in the same run;
ratio = value / baseline. ``ok`` when value >= 10,000 events/s and ratio >= 0.25
and every event was accepted (``errors`` counts HTTP failures and events not accepted).

This module also holds the server and workload helpers the other sync benchmarks use.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
from _report import parse_args, report
from api_throughput import REPO, add_counters, running_server, server_env
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from core.commands import CallNext, Command, Complete, IssueTicket, OpenCounter, StartService
from core.errors import DomainError
from core.events import event_to_dict, parse_event
from core.machine import apply, decide
from core.state import BranchState, TicketStatus
from core.values import BusinessDay, TicketNumber
from sync.client.replica import new_state
from sync.protocol import DEVICE_HEADER, MAX_PULL_LIMIT, PullResponse, PushResponse, ReferenceData

BATCH: Final = 500
TARGET_RATE: Final = 10_000.0
TARGET_RATIO: Final = 0.25
STEP: Final = timedelta(seconds=1.5)  # simulated time between two commands


@dataclass
class Server:
    base_url: str
    pid: int
    demo: dict[str, Any]
    data_dir: Path
    tmp: Path

    @property
    def branch_id(self) -> str:
        return str(self.demo["branch_id"])

    def database(self) -> Path:
        from server.config import Settings

        return Path(make_url(Settings(data_dir=self.data_dir).database_url).database or "")


@contextmanager
def demo_server(counters: int) -> Iterator[Server]:
    """The service on a new demo tenant with ``counters`` counters; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="queuedesk-bench-") as tmp:
        data_dir, log = Path(tmp) / "data", Path(tmp) / "server.log"
        demo_run = subprocess.run(
            [sys.executable, "-m", "server", "demo", "--json"],
            env=server_env(data_dir),
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        demo = json.loads(demo_run.stdout.strip().splitlines()[-1])
        add_counters(data_dir, demo["branch_id"], counters)
        try:
            with running_server(data_dir, log) as (base_url, pid):
                yield Server(base_url, pid, demo, data_dir, Path(tmp))
        except BaseException:
            if log.exists():
                print(f"server log (last lines):\n{log.read_text(errors='replace')[-3000:]}")
            raise


def login(server: Server, username: str = "staff1") -> tuple[str, str]:
    """(access token, user id) of a demo user."""
    body = {"tenant": server.demo["tenant"], "username": username}
    body["password"] = server.demo["users"][username]
    response = httpx.post(f"{server.base_url}/api/v1/auth/login", json=body, timeout=30.0)
    response.raise_for_status()
    return response.json()["access_token"], response.json()["user"]["id"]


def headers(token: str, device_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", DEVICE_HEADER: device_id}


def pull_all(client: httpx.Client, branch_id: str, device_id: str) -> tuple[ReferenceData, list]:
    """The reference data and every event of the branch (registers the device)."""
    after, events, reference = 0, [], None
    while True:
        params = {"branch_id": branch_id, "device_id": device_id, "after": after}
        response = client.get("/api/v1/sync/pull", params={**params, "limit": MAX_PULL_LIMIT})
        response.raise_for_status()
        page = PullResponse.model_validate_json(response.content)
        reference = reference or page.reference
        events += [parse_event(e.event) for e in page.events]
        after = page.cursor
        if not page.has_more:
            assert reference is not None
            return reference, events


@dataclass
class Workload:
    """A branch's day: issue tickets, then call, start and complete them at every counter.

    Commands are decided on ``state`` (a copy of the server's branch state) and
    their events folded back in, so the service will accept every one of them.
    Each command is one event; ``device_id`` may change between batches, and each
    device's events carry its own contiguous ``device_seq``.
    """

    state: BranchState
    device_id: str
    actor_id: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=3))
    seqs: dict[str, int] = field(default_factory=dict)
    numbers: dict[tuple[date, str], int] = field(default_factory=dict)
    turn: int = 0

    def __post_init__(self) -> None:
        self.services = sorted(self.state.services)
        self.counters = sorted(self.state.counters)
        self.opened = False

    def _run(self, command: Command, out: list[dict[str, Any]]) -> None:
        for event in decide(self.state, command):
            seq = self.seqs.get(self.device_id, 0) + 1
            self.seqs[self.device_id] = seq
            stamped = event.model_copy(update={"device_id": self.device_id, "device_seq": seq})
            apply(self.state, stamped)
            out.append(event_to_dict(stamped))

    def _issue(self, out: list[dict[str, Any]]) -> None:
        service = self.state.services[self.services[self.turn % len(self.services)]]
        day = BusinessDay.of(self.at, self.state.time_zone, self.state.day_starts_at_min).day
        number = self.numbers[(day, service.code)] = self.numbers.get((day, service.code), 0) + 1
        ticket = TicketNumber(service.code, number)
        self._run(IssueTicket(at=self.at, actor_id=self.actor_id, service_id=service.id,
                              number=ticket), out)  # fmt: skip

    def events(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` events, as JSON objects."""
        out: list[dict[str, Any]] = []
        if not self.opened:
            for counter_id in self.counters:
                if self.state.counters[counter_id].status != "open":
                    self._run(OpenCounter(at=self.at, counter_id=counter_id), out)
            self.opened = True
        while len(out) < count:
            self.at += STEP
            self.turn += 1
            if len(self.state.waiting_in(self.services[self.turn % len(self.services)])) < 3:
                self._issue(out)
                continue
            counter = self.state.counters[self.counters[self.turn % len(self.counters)]]
            ticket = counter.current_ticket_id
            status = self.state.tickets[ticket].status if ticket else None
            try:
                if status is TicketStatus.CALLED:
                    self._run(StartService(at=self.at, ticket_id=ticket or ""), out)
                elif status is TicketStatus.SERVING:
                    self._run(Complete(at=self.at, ticket_id=ticket or ""), out)
                else:
                    self._run(CallNext(at=self.at, counter_id=counter.id), out)
            except DomainError:  # nothing this counter serves is waiting
                self._issue(out)
        return out


def new_workload(server: Server, token: str, actor_id: str | None = None) -> Workload:
    """A workload on the server's current branch state, pushing as a new device."""
    device_id = str(uuid.uuid4())
    with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
        client.headers.update(headers(token, device_id))
        reference, events = pull_all(client, server.branch_id, device_id)
    state = new_state(server.branch_id, reference)
    for event in events:
        apply(state, event)
    return Workload(state, device_id, actor_id=actor_id)


def push_body(server: Server, device_id: str, events: list[dict[str, Any]]) -> bytes:
    body = {"branch_id": server.branch_id, "device_id": device_id, "events": events}
    return json.dumps(body, separators=(",", ":")).encode()


def push_all(
    client: httpx.Client, bodies: list[bytes], device_ids: list[str], token: str
) -> tuple[float, list[PushResponse], int]:
    """Push each body in turn; (seconds, parsed responses, HTTP failures)."""
    answers: list[httpx.Response] = []
    started = time.perf_counter()
    for body, device_id in zip(bodies, device_ids, strict=True):
        sent = {**headers(token, device_id), "Content-Type": "application/json"}
        answers.append(client.post("/api/v1/sync/push", content=body, headers=sent))
    elapsed = time.perf_counter() - started
    failed = [a for a in answers if a.status_code != 200]
    for answer in failed[:3]:
        print(f"push failed: {answer.status_code} {answer.text[:500]}")
    parsed = [PushResponse.model_validate_json(a.content) for a in answers if a.status_code == 200]
    return elapsed, parsed, len(failed)


def baseline_insert(server: Server, batches: list[list[dict[str, Any]]], device_id: str) -> float:
    """Rows/s of a plain Core bulk insert of the same log rows into a copy of the database."""
    from sqlalchemy import select

    from server.db import make_engine, make_session_factory, session_scope
    from server.models import Branch, QueueEvent

    copy = server.tmp / "baseline.sqlite3"
    with sqlite3.connect(server.database()) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    engine = make_engine(f"sqlite:///{copy}")
    try:
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            tenant_id = session.scalar(
                select(Branch.tenant_id).where(Branch.id == uuid.UUID(server.branch_id))
            )
        seq, prepared, branch = 0, [], uuid.UUID(server.branch_id)
        for batch in batches:
            rows = []
            for raw in batch:
                event, seq = parse_event(raw), seq + 1
                ticket = getattr(event, "ticket_id", None)
                rows.append({
                    "id": event.id, "tenant_id": tenant_id, "branch_id": branch,
                    "server_seq": seq, "device_id": uuid.UUID(device_id),
                    "device_seq": event.device_seq, "type": raw["type"],
                    "ticket_id": uuid.UUID(ticket) if ticket else None,
                    "occurred_at": event.occurred_at, "actor_user_id": None, "payload": raw,
                    "status": "accepted", "reason": None,
                })  # fmt: skip
            prepared.append(rows)
        started = time.perf_counter()
        for rows in prepared:
            with session_scope(factory) as session:
                session.execute(insert(QueueEvent), rows)
        return seq / (time.perf_counter() - started)
    finally:
        engine.dispose()


def main() -> None:
    args = parse_args(__doc__ or "")
    total = 10_000 if args.quick else 50_000
    with demo_server(counters=10) as server:
        token, _user_id = login(server)
        workload = new_workload(server, token)
        device_id = workload.device_id
        batches = [workload.events(BATCH) for _ in range(total // BATCH)]
        sent = sum(len(b) for b in batches)
        bodies = [push_body(server, device_id, b) for b in batches]
        baseline = baseline_insert(server, batches, device_id)
        with httpx.Client(base_url=server.base_url, timeout=120.0) as client:
            elapsed, answers, failed = push_all(client, bodies, [device_id] * len(bodies), token)
    results = [r for answer in answers for r in answer.results]
    statuses = dict(Counter(r.status for r in results))
    for result in [r for r in results if r.status == "rejected"][:3]:
        print(f"rejected: {result.reason}")
    accepted = statuses.get("accepted", 0)
    errors = failed + (sent - accepted)
    value = accepted / elapsed
    ratio = value / baseline if baseline else 0.0
    print(f"push: {sent:,} events in {len(bodies)} batches of {BATCH} in {elapsed:.2f} s")
    print(f"  {value:,.0f} events/s accepted, verdicts {statuses}, failed requests {failed}")
    print(f"Core bulk insert of the same rows: {baseline:,.0f} rows/s; ratio {ratio:.3f}")
    report(
        "sync_ingest",
        value=value,
        unit="events_per_s",
        baseline=baseline,
        ratio=ratio,
        target=f"value>={TARGET_RATE:g}, ratio>={TARGET_RATIO}, errors==0",
        ok=value >= TARGET_RATE and ratio >= TARGET_RATIO and errors == 0,
        events=sent,
        batch=BATCH,
        accepted=accepted,
        errors=errors,
        seconds=round(elapsed, 3),
    )


if __name__ == "__main__":
    main()
