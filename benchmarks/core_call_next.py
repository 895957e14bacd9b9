"""Cost of one call-next with 1,000 vs 100,000 waiting tickets, and replay speed.

value = µs per call-next (decide + apply) at 100,000 waiting tickets;
baseline = the same at 1,000 waiting tickets, in the same run;
ratio = value / baseline, target ≤ 2.0: choosing the next ticket must not grow
with the queue. The queue length is held constant by completing each called
ticket and issuing a new one outside the timed section. The JSON line also
reports how fast a 1,000,000-event log replays into a fresh branch state.
"""

from __future__ import annotations

import gc
import statistics
import time
from datetime import UTC, datetime, timedelta

from _report import parse_args, report

from core.commands import CallNext
from core.events import (
    CounterOpened,
    EventBase,
    ServiceStarted,
    TicketCalled,
    TicketCompleted,
    TicketIssued,
)
from core.ids import uuid7
from core.machine import apply, decide
from core.state import BranchState, CounterConfig, ServiceConfig
from core.values import MAX_TICKET_NUMBER

SERVICES = [ServiceConfig(f"s{i}", code, f"Service {code}", 600) for i, code in enumerate("ABC")]
T0 = datetime(2026, 11, 25, 8, tzinfo=UTC)


def new_branch() -> BranchState:
    return BranchState.new(
        "branch",
        "Europe/Berlin",
        SERVICES,
        [CounterConfig("c1", "Counter 1", ("s0", "s1", "s2"))],
    )


class Issuer:
    """Issues tickets round-robin over services and days, so numbers never run out."""

    def __init__(self) -> None:
        self.n = 0

    def event(self, at: datetime) -> TicketIssued:
        self.n += 1
        service = SERVICES[self.n % 3]
        day_index, number = divmod(self.n // 3, MAX_TICKET_NUMBER)
        return TicketIssued(
            id=uuid7(),
            branch_id="branch",
            occurred_at=at,
            ticket_id=f"t{self.n}",
            service_id=service.id,
            number=f"{service.code}{number + 1:03d}",
            business_day=(T0 + timedelta(days=day_index)).date(),
            priority=1 if self.n % 50 == 0 else 0,
        )


def filled(waiting: int) -> tuple[BranchState, Issuer]:
    state, issuer = new_branch(), Issuer()
    for _ in range(waiting):
        apply(state, issuer.event(T0))
    apply(state, CounterOpened(id=uuid7(), branch_id="branch", occurred_at=T0, counter_id="c1"))
    return state, issuer


def one_call_ns(state: BranchState, issuer: Issuer) -> int:
    """Time one call-next; then complete it and issue a new ticket, untimed."""
    start = time.perf_counter_ns()
    (called,) = decide(state, CallNext(at=T0, counter_id="c1"))
    apply(state, called)
    elapsed = time.perf_counter_ns() - start
    assert isinstance(called, TicketCalled)
    meta = {"branch_id": "branch", "occurred_at": T0, "ticket_id": called.ticket_id}
    apply(state, ServiceStarted(id=uuid7(), counter_id="c1", **meta))
    apply(state, TicketCompleted(id=uuid7(), counter_id="c1", **meta))
    apply(state, issuer.event(T0))
    return elapsed


def call_next_us(sizes: tuple[int, int], calls: int) -> tuple[float, float]:
    """Median µs per call-next for both queue sizes, measured in alternating rounds
    so that whatever else the machine does slows both alike."""
    branches = [filled(n) for n in sizes]
    samples: list[list[int]] = [[], []]
    gc.disable()
    try:
        for _ in range(calls // 100):
            for i, (state, issuer) in enumerate(branches):
                samples[i].extend(one_call_ns(state, issuer) for _ in range(100))
    finally:
        gc.enable()
    for (state, _), n in zip(branches, sizes, strict=True):
        assert sum(state.waiting.count(s.id) for s in SERVICES) == n
    small, large = (statistics.median(s) / 1000 for s in samples)
    return small, large


def replay_rate(total_events: int) -> float:
    """Events per second folding a log of issue/call/start/complete cycles."""
    issuer = Issuer()
    log: list[EventBase] = [
        CounterOpened(id=uuid7(), branch_id="branch", occurred_at=T0, counter_id="c1")
    ]
    while len(log) < total_events:
        issued = issuer.event(T0)
        meta = {"branch_id": "branch", "occurred_at": T0, "ticket_id": issued.ticket_id}
        log += [
            issued,
            TicketCalled(id=uuid7(), counter_id="c1", **meta),
            ServiceStarted(id=uuid7(), counter_id="c1", **meta),
            TicketCompleted(id=uuid7(), counter_id="c1", **meta),
        ]
    state = new_branch()
    start = time.perf_counter()
    for event in log:
        apply(state, event)
    return len(log) / (time.perf_counter() - start)


def main() -> None:
    args = parse_args(__doc__ or "")
    calls = 2_000 if args.quick else 10_000
    baseline, value = call_next_us((1_000, 100_000), calls)
    ratio = value / baseline
    rate = replay_rate(100_000 if args.quick else 1_000_000)
    print(f"call-next: {baseline:.1f} µs at 1,000 waiting, {value:.1f} µs at 100,000 waiting")
    print(f"replay: {rate:,.0f} events/s")
    report(
        "core_call_next",
        value=value,
        unit="us_per_call_next_at_100k",
        baseline=baseline,
        ratio=ratio,
        target="ratio<=2.0",
        ok=ratio <= 2.0,
        replay_events_per_s=round(rate),
        replay_events=100_000 if args.quick else 1_000_000,
    )


if __name__ == "__main__":
    main()
