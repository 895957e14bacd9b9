"""A small branch's reference data, caches on real files, and a fake central service.

``FakeService`` is the service's sync contract in a few lines: it folds pushed
events in device order with :func:`core.machine.apply` (first commit wins), gives
accepted ones the next ``server_seq``, answers rejections per event, and serves
pull pages with ``last_device_seq`` and reference data. It lets the tests drive
several consoles against one authoritative log without a network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from core import commands as cmd
from core import state_codec
from core.errors import DomainError
from core.events import EventBase, event_to_dict, parse_event
from core.machine import apply, decide
from core.state import BranchState
from sync.client.cache import LocalCache
from sync.client.replica import new_state
from sync.client.views import AppliedPull, Rejection, TicketView
from sync.protocol import (
    BranchRef,
    BranchStateBody,
    CounterRef,
    EventResult,
    LeaseBlock,
    PulledEvent,
    PullResponse,
    ReferenceData,
    ServiceRef,
)

BRANCH = "01900000-0000-7000-8000-00000000b001"
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
DAY = date(2024, 3, 1)
ACCOUNTS, LOANS = "svc-accounts", "svc-loans"
C1, C2 = "ctr-1", "ctr-2"


def reference(version: str = "v1", slot: int | None = None, **changes: Any) -> ReferenceData:
    data: dict[str, Any] = {
        "version": version,
        "branch": BranchRef(id=BRANCH, name="Main street", time_zone="Europe/Berlin"),
        "services": [
            ServiceRef(id=ACCOUNTS, code="A", name="Accounts", target_wait_s=600),
            ServiceRef(id=LOANS, code="L", name="Loans"),
        ],
        "counters": [
            CounterRef(id=C1, name="Counter 1", work_profile=[ACCOUNTS, LOANS]),
            CounterRef(id=C2, name="Counter 2", work_profile=[LOANS, ACCOUNTS]),
        ],
        "staff": [],
        "pause_reasons": ["Break"],
        "permissions": [],
        "device_slot": slot,
    }
    data.update(changes)
    return ReferenceData(**data)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def lease(service_id: str, prefix: str, first: int, last: int, day: date = DAY) -> LeaseBlock:
    return LeaseBlock(
        service_id=service_id, prefix=prefix, business_day=day, first=first, last=last
    )


def page(
    events: list[tuple[int, EventBase]],
    *,
    cursor: int | None = None,
    has_more: bool = False,
    last_device_seq: int = 0,
    ref: ReferenceData | None = None,
) -> PullResponse:
    return PullResponse(
        events=[PulledEvent(server_seq=s, event=event_to_dict(e)) for s, e in events],
        cursor=cursor if cursor is not None else max((s for s, _ in events), default=0),
        has_more=has_more,
        last_device_seq=last_device_seq,
        reference=ref,
    )


def view(cache: LocalCache, ticket_id: str) -> TicketView:
    found = cache.ticket(ticket_id)
    assert found is not None, f"no ticket {ticket_id} in the projection"
    return found


def open_cache(directory: Path, name: str = "cache", slot: int | None = None) -> LocalCache:
    """A cache with reference data (and optionally a fallback slot) on a real file."""
    cache = LocalCache.open(directory / f"{name}.sqlite3", BRANCH)
    if cache.reference_version() is None:
        cache.apply_reference(reference(slot=slot))
    return cache


@dataclass
class FakeService:
    """The authoritative branch: one state, one log, first commit wins."""

    ref: ReferenceData = field(default_factory=reference)
    state: BranchState = field(init=False)
    log: list[PulledEvent] = field(default_factory=list)
    verdicts: dict[str, EventResult] = field(default_factory=dict)
    device_seqs: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = new_state(BRANCH, self.ref)

    def _append(self, event: EventBase) -> int:
        apply(self.state, event)
        self.log.append(PulledEvent(server_seq=len(self.log) + 1, event=event_to_dict(event)))
        return len(self.log)

    def run(self, command: cmd.Command) -> list[EventBase]:
        """A command of another client (a kiosk, the web), decided on the service."""
        events = decide(self.state, command)
        for event in events:
            self._append(event)
        return events

    def push(self, cache: LocalCache, limit: int = 1000) -> list[Rejection]:
        results = []
        for body in cache.pending(limit):
            event = parse_event(body)
            key = str(event.id)
            if key in self.verdicts:
                first = self.verdicts[key]
                results.append(first.model_copy(update={"status": "duplicate"}))
                continue
            expected = self.device_seqs.get(event.device_id or "", 0) + 1
            assert event.device_seq == expected, f"device_seq gap: {event.device_seq} != {expected}"
            self.device_seqs[event.device_id or ""] = expected
            try:
                verdict = EventResult(
                    event_id=event.id, status="accepted", server_seq=self._append(event)
                )
            except DomainError as exc:
                verdict = EventResult(event_id=event.id, status="rejected", reason=str(exc))
            self.verdicts[key] = verdict
            results.append(verdict)
        return cache.apply_push_results(results)

    def pull(self, cache: LocalCache, limit: int = 5000, state: bool = False) -> AppliedPull:
        """The next page after the cache's cursor; ``state`` as the real service does it."""
        after = cache.cursor()
        chunk = self.log[after : after + limit]
        version = cache.reference_version()
        has_more = after + len(chunk) < len(self.log)
        return cache.apply_pull(
            PullResponse(
                events=chunk,
                cursor=after + len(chunk),
                has_more=has_more,
                last_device_seq=self.device_seqs.get(cache.device_id, 0),
                reference=None if version == self.ref.version else self.ref,
                state=self.state_body() if state and after == 0 and has_more else None,
            )
        )

    def state_body(self) -> BranchStateBody:
        """The state at the head of the log, as the service sends it to a new device."""
        return BranchStateBody(
            format=state_codec.FORMAT,
            server_seq=len(self.log),
            event_id=self.log[-1].event["id"],
            events=len(self.log),
            body=state_codec.encode(self.state),
        )

    def sync(self, cache: LocalCache) -> list[Rejection]:
        rejections = self.push(cache)
        while True:
            applied = self.pull(cache)
            rejections += applied.rejections
            if not applied.has_more:
                return rejections
