"""A small branch for the core tests, a desk that runs commands on it, and snapshots.

The branch has three services and three counters whose work profiles overlap, so
call-next has to choose across services. ``Desk.run`` checks on every command that
``decide`` leaves the state alone; ``Desk.reject`` checks that a refused command
changes nothing.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core import commands as cmd
from core.errors import QueueDeskError
from core.events import Customer, EventBase
from core.ids import uuid7
from core.machine import apply, decide
from core.state import (
    BranchState,
    Counter,
    CounterConfig,
    CounterStatus,
    ServiceConfig,
    Ticket,
    TicketStatus,
)
from core.values import Channel, Outcome, PriorityClass, TicketNumber, TransferPosition

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
ZONE = "Europe/Berlin"
BRANCH_ID = "branch-1"
ACTOR = "staff-1"

ACCOUNTS, LOANS, TAX = "svc-accounts", "svc-loans", "svc-tax"
SERVICES = (
    ServiceConfig(ACCOUNTS, "A", "Accounts", target_wait_s=600),
    ServiceConfig(LOANS, "L", "Loans"),
    ServiceConfig(TAX, "TX", "Tax"),
)
C1, C2, C3 = "ctr-1", "ctr-2", "ctr-3"
COUNTERS = (
    CounterConfig(C1, "Counter 1", (ACCOUNTS, LOANS)),
    CounterConfig(C2, "Counter 2", (LOANS, TAX)),
    CounterConfig(C3, "Counter 3", (TAX, ACCOUNTS)),
)
CODES = {s.id: s.code for s in SERVICES}

S = TicketStatus


def new_branch(day_starts_at_min: int = 0, time_zone: str = ZONE) -> BranchState:
    return BranchState.new(BRANCH_ID, time_zone, SERVICES, COUNTERS, day_starts_at_min)


def _fields(obj: Ticket | Counter) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def snapshot(state: BranchState) -> dict[str, Any]:
    """A canonical, detached copy of everything a branch state holds (values are immutable)."""
    return {
        "branch_id": state.branch_id,
        "time_zone": state.time_zone,
        "day_starts_at_min": state.day_starts_at_min,
        "services": dict(state.services),
        "applied": state.applied,
        "tickets": {tid: _fields(t) for tid, t in state.tickets.items()},
        "counters": {cid: _fields(c) for cid, c in state.counters.items()},
        "numbers": dict(state.numbers),
        "waiting": {
            sid: (list(q.general), list(q.appointments))
            for sid, q in state.waiting.queues.items()
            if q.general or q.appointments
        },
    }


class Desk:
    """Runs commands against one branch with a clock that only moves forward."""

    def __init__(self, state: BranchState | None = None, now: datetime = T0) -> None:
        self.state = state if state is not None else new_branch()
        self.now = now
        self.log: list[EventBase] = []
        self._next_number: dict[str, int] = {}

    # -- running commands ------------------------------------------------------

    def tick(self, minutes: float = 1) -> datetime:
        self.now += timedelta(minutes=minutes)
        return self.now

    def run(self, command: cmd.Command) -> list[EventBase]:
        before = snapshot(self.state)
        events = decide(self.state, command)
        assert snapshot(self.state) == before, "decide changed the state"
        for event in events:
            apply(self.state, event)
        self.log.extend(events)
        return events

    def reject(
        self, command: cmd.Command, error: type[QueueDeskError] = QueueDeskError
    ) -> QueueDeskError:
        """Run a command that must be refused with ``error``; the state must not change."""
        before = snapshot(self.state)
        with pytest.raises(error) as caught:
            decide(self.state, command)
        assert snapshot(self.state) == before, "a refused command changed the state"
        return caught.value

    def reject_event(self, event: EventBase, error: type[QueueDeskError]) -> QueueDeskError:
        """Apply an event that must be refused with ``error``; the state must not change."""
        before = snapshot(self.state)
        with pytest.raises(error) as caught:
            apply(self.state, event)
        assert snapshot(self.state) == before, "a refused event changed the state"
        return caught.value

    def meta(self) -> dict[str, Any]:
        """The common fields of an event built by hand, as a pushing device would."""
        return {"id": uuid7(), "branch_id": BRANCH_ID, "occurred_at": self.now}

    # -- shortcuts -------------------------------------------------------------

    def issue(
        self,
        service_id: str = ACCOUNTS,
        number: str | None = None,
        *,
        priority: PriorityClass = PriorityClass.NORMAL,
        channel: Channel = Channel.WALK_IN,
        appointment_at: datetime | None = None,
        customer: Customer | None = None,
        ticket_id: str | None = None,
    ) -> Ticket:
        self.tick()
        code = CODES[service_id]
        if number is None:
            n = self._next_number[code] = self._next_number.get(code, 0) + 1
            number = f"{code}{n:03d}"
        (event,) = self.run(
            cmd.IssueTicket(
                at=self.now,
                actor_id=ACTOR,
                service_id=service_id,
                number=TicketNumber.parse(number),
                priority=priority,
                channel=channel,
                appointment_at=appointment_at,
                customer=customer,
                ticket_id=ticket_id,
            )
        )
        return self.state.tickets[event.ticket_id]  # type: ignore[attr-defined]

    def open(self, *counter_ids: str) -> None:
        for counter_id in counter_ids:
            self.run(cmd.OpenCounter(at=self.tick(), actor_id=ACTOR, counter_id=counter_id))

    def call(self, ticket: Ticket, counter_id: str) -> None:
        self.run(cmd.CallTicket(at=self.tick(), counter_id=counter_id, ticket_id=ticket.id))

    def call_next(self, counter_id: str) -> Ticket:
        (event,) = self.run(cmd.CallNext(at=self.tick(), counter_id=counter_id))
        return self.state.tickets[event.ticket_id]  # type: ignore[attr-defined]

    def start(self, ticket: Ticket) -> None:
        self.run(cmd.StartService(at=self.tick(), ticket_id=ticket.id))

    def complete(self, ticket: Ticket, outcome: Outcome = Outcome.SERVED) -> None:
        self.run(cmd.Complete(at=self.tick(), ticket_id=ticket.id, outcome=outcome))

    def no_show(self, ticket: Ticket) -> None:
        self.run(cmd.MarkNoShow(at=self.tick(), ticket_id=ticket.id))

    def park(self, ticket: Ticket) -> None:
        self.run(cmd.Park(at=self.tick(), ticket_id=ticket.id))

    def return_(self, ticket: Ticket) -> None:
        self.run(cmd.ReturnTicket(at=self.tick(), ticket_id=ticket.id))

    def cancel(self, ticket: Ticket) -> None:
        self.run(cmd.Cancel(at=self.tick(), ticket_id=ticket.id))

    def transfer(
        self, ticket: Ticket, to_service_id: str, position: TransferPosition
    ) -> list[EventBase]:
        return self.run(
            cmd.Transfer(
                at=self.tick(), ticket_id=ticket.id, to_service_id=to_service_id, position=position
            )
        )

    def pause(self, counter_id: str, reason: str = "lunch") -> None:
        self.run(cmd.PauseCounter(at=self.tick(), counter_id=counter_id, reason=reason))

    # -- bringing things into a given state ----------------------------------------

    def ticket_in(self, status: TicketStatus, counter_id: str = C3, number: str = "A042") -> Ticket:
        """A ticket of Accounts in ``status``; when it has been called, it was at ``counter_id``."""
        ticket = self.issue(ACCOUNTS, number)
        if status is S.WAITING:
            return ticket
        if status is S.CANCELLED:
            self.cancel(ticket)
            return ticket
        if self.state.counters[counter_id].status is CounterStatus.CLOSED:
            self.open(counter_id)
        self.call(ticket, counter_id)
        if status in (S.SERVING, S.DONE):
            self.start(ticket)
        if status is S.DONE:
            self.complete(ticket)
        elif status is S.NO_SHOW:
            self.no_show(ticket)
        elif status is S.PARKED:
            self.park(ticket)
        assert ticket.status is status
        return ticket

    def counter_in(self, status: str, counter_id: str = C3) -> Counter:
        """``status`` is closed, open, paused (reason 'lunch') or busy (A042 called there)."""
        if status != "closed":
            self.open(counter_id)
        if status == "paused":
            self.pause(counter_id)
        elif status == "busy":
            self.call(self.issue(ACCOUNTS, "A042"), counter_id)
        return self.state.counters[counter_id]

    def order(self, service_id: str) -> list[str]:
        """Numbers of the waiting tickets of a service, in call order."""
        return [t.number for t in self.state.waiting_in(service_id)]
