"""``decide(state, command) -> events`` and ``apply(state, event) -> state`` for a branch.

The console and the server run exactly this code, so what a console predicts
offline is what the server decides when the events arrive. ``apply`` checks an
event's preconditions (:mod:`core.rules`) before folding it and raises
:class:`~core.errors.DomainError` without changing anything when they fail.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from core import rules
from core.commands import (
    CallNext,
    CallTicket,
    Cancel,
    CloseCounter,
    Command,
    Complete,
    IssueTicket,
    MarkNoShow,
    OpenCounter,
    Park,
    PauseCounter,
    Recall,
    ResumeCounter,
    ReturnTicket,
    StartService,
    Transfer,
)
from core.errors import DomainError, InvalidValue
from core.events import (
    CounterClosed,
    CounterOpened,
    CounterPaused,
    CounterResumed,
    EventBase,
    ServiceStarted,
    TicketCalled,
    TicketCancelled,
    TicketCompleted,
    TicketIssued,
    TicketNoShow,
    TicketParked,
    TicketRecalled,
    TicketReturned,
    TicketTransferred,
)
from core.ids import uuid7
from core.ordering import FRONT, NORMAL
from core.state import BranchState, CounterStatus, Ticket, TicketStatus
from core.values import BusinessDay, Channel, PriorityClass, TransferPosition

S = TicketStatus

# -- apply ---------------------------------------------------------------------


def apply(state: BranchState, event: EventBase) -> BranchState:
    """Fold one event into ``state`` (in place) and return it."""
    rules.check(state, event)
    _MUTATIONS[type(event)](state, event)
    state.applied += 1
    return state


def replay(state: BranchState, events: Iterable[EventBase]) -> BranchState:
    for event in events:
        apply(state, event)
    return state


def _enqueue(state: BranchState, ticket: Ticket, band: int, ordinal: int) -> None:
    ticket.queue_key = (-ticket.priority, band, ordinal, ticket.id)
    if ticket.channel is Channel.APPOINTMENT and ticket.appointment_at is not None:
        due = ticket.appointment_at.timestamp()
        ticket.appointment_key = (-ticket.priority, due, ordinal, ticket.id)
    state.waiting.add(ticket.service_id, ticket.queue_key, ticket.appointment_key)


def _dequeue(state: BranchState, ticket: Ticket) -> None:
    if ticket.queue_key is not None:
        state.waiting.remove(ticket.service_id, ticket.queue_key, ticket.appointment_key)
        ticket.queue_key = ticket.appointment_key = None


def _leave_counter(state: BranchState, ticket: Ticket) -> None:
    if ticket.counter_id is not None:
        counter = state.counters[ticket.counter_id]
        if counter.current_ticket_id == ticket.id:
            counter.current_ticket_id = None


def _issued(state: BranchState, e: TicketIssued) -> None:
    ticket = Ticket(
        id=e.ticket_id,
        number=e.number,
        service_id=e.service_id,
        business_day=e.business_day,
        channel=e.channel,
        priority=PriorityClass(e.priority),
        issued_at=e.occurred_at,
        appointment_at=e.appointment_at,
        customer=e.customer,
        segment_started_at=e.occurred_at,
        join_ordinal=state.applied,
    )
    state.tickets[ticket.id] = ticket
    state.numbers[(e.business_day, e.number)] = ticket.id
    _enqueue(state, ticket, NORMAL, state.applied)


def _called(state: BranchState, e: TicketCalled) -> None:
    ticket = state.tickets[e.ticket_id]
    _dequeue(state, ticket)
    ticket.status = S.CALLED
    ticket.counter_id = e.counter_id
    ticket.called_at = e.occurred_at
    state.counters[e.counter_id].current_ticket_id = ticket.id


def _recalled(state: BranchState, e: TicketRecalled) -> None:
    state.tickets[e.ticket_id].recalls += 1


def _started(state: BranchState, e: ServiceStarted) -> None:
    ticket = state.tickets[e.ticket_id]
    ticket.status = S.SERVING
    ticket.service_started_at = e.occurred_at


def _finish(state: BranchState, ticket_id: str, status: TicketStatus, at: Any) -> None:
    ticket = state.tickets[ticket_id]
    _dequeue(state, ticket)
    _leave_counter(state, ticket)
    ticket.status = status
    ticket.finished_at = at
    ticket.parked_by = None


def _completed(state: BranchState, e: TicketCompleted) -> None:
    _finish(state, e.ticket_id, S.DONE, e.occurred_at)


def _no_show(state: BranchState, e: TicketNoShow) -> None:
    _finish(state, e.ticket_id, S.NO_SHOW, e.occurred_at)


def _cancelled(state: BranchState, e: TicketCancelled) -> None:
    _finish(state, e.ticket_id, S.CANCELLED, e.occurred_at)


def _transferred(state: BranchState, e: TicketTransferred) -> None:
    ticket = state.tickets[e.ticket_id]
    _dequeue(state, ticket)
    _leave_counter(state, ticket)
    ticket.service_id = e.to_service_id
    ticket.status = S.WAITING
    ticket.counter_id = None
    ticket.called_at = ticket.service_started_at = None
    ticket.segment_started_at = e.occurred_at
    ticket.transfers += 1
    if e.position is TransferPosition.FRONT:
        _enqueue(state, ticket, FRONT, -state.applied)  # the latest sent to the front goes first
    elif e.position is TransferPosition.ORIGINAL:
        _enqueue(state, ticket, NORMAL, ticket.join_ordinal)
    else:
        _enqueue(state, ticket, NORMAL, state.applied)


def _parked(state: BranchState, e: TicketParked) -> None:
    ticket = state.tickets[e.ticket_id]
    _leave_counter(state, ticket)
    ticket.status = S.PARKED
    ticket.counter_id = None
    ticket.parked_by = e.counter_id


def _returned(state: BranchState, e: TicketReturned) -> None:
    ticket = state.tickets[e.ticket_id]
    ticket.status = S.WAITING
    ticket.parked_by = None
    ticket.called_at = ticket.service_started_at = None
    _enqueue(state, ticket, FRONT, -state.applied)  # it has waited its turn already


def _opened(state: BranchState, e: CounterOpened) -> None:
    counter = state.counters[e.counter_id]
    counter.status = CounterStatus.OPEN
    counter.staff_id = e.actor_id


def _closed(state: BranchState, e: CounterClosed) -> None:
    counter = state.counters[e.counter_id]
    counter.status = CounterStatus.CLOSED
    counter.staff_id = counter.pause_reason = None


def _paused(state: BranchState, e: CounterPaused) -> None:
    counter = state.counters[e.counter_id]
    counter.status = CounterStatus.PAUSED
    counter.pause_reason = e.reason


def _resumed(state: BranchState, e: CounterResumed) -> None:
    counter = state.counters[e.counter_id]
    counter.status = CounterStatus.OPEN
    counter.pause_reason = None


_MUTATIONS: dict[type[EventBase], Callable[[BranchState, Any], None]] = {
    TicketIssued: _issued,
    TicketCalled: _called,
    TicketRecalled: _recalled,
    ServiceStarted: _started,
    TicketCompleted: _completed,
    TicketNoShow: _no_show,
    TicketTransferred: _transferred,
    TicketParked: _parked,
    TicketReturned: _returned,
    TicketCancelled: _cancelled,
    CounterOpened: _opened,
    CounterClosed: _closed,
    CounterPaused: _paused,
    CounterResumed: _resumed,
}

# -- decide --------------------------------------------------------------------


def decide(state: BranchState, command: Command) -> list[EventBase]:
    """The events ``command`` causes, or :class:`DomainError` saying why it cannot happen.

    ``state`` is not changed; fold the returned events with :func:`apply`.
    """
    if command.at.tzinfo is None:
        raise InvalidValue("at", "a command's time must be timezone-aware")
    handler = _DECIDERS.get(type(command))
    if handler is None:
        raise TypeError(f"not a queue command: {type(command).__name__}")
    try:
        events = handler(state, command)
    except ValidationError as exc:
        # A command field the event schema refuses (a naive appointment time, an over-long
        # reason) is bad input, not a crash: report it like any other invalid value.
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "command"
        bad = first["input"]
        shown = reprlib.repr(bad if isinstance(bad, str) else str(bad))
        raise InvalidValue(field, f"{shown}: {first['msg']}") from None
    if len(events) == 1:
        rules.check(state, events[0])
    return events


def _meta(state: BranchState, command: Command) -> dict[str, Any]:
    return {
        "id": uuid7(),
        "branch_id": state.branch_id,
        "occurred_at": command.at,
        "actor_id": command.actor_id,
    }


def _issue(state: BranchState, c: IssueTicket) -> list[EventBase]:
    day = BusinessDay.of(c.at, state.time_zone, state.day_starts_at_min).day
    return [
        TicketIssued(
            **_meta(state, c),
            ticket_id=c.ticket_id or str(uuid7()),
            service_id=c.service_id,
            number=str(c.number),
            business_day=day,
            channel=c.channel,
            priority=int(c.priority),
            appointment_at=c.appointment_at,
            customer=c.customer,
        )
    ]


def _call_next(state: BranchState, c: CallNext) -> list[EventBase]:
    counter = state.counter(c.counter_id)
    rules.need_free_counter(state, counter)
    ticket_id = state.waiting.next_ticket(counter.work_profile, c.at)
    if ticket_id is None:
        names = ", ".join(
            state.services[s].name for s in counter.work_profile if s in state.services
        )
        raise DomainError(f"No tickets are waiting for {counter.name} ({names or 'no services'})")
    return [TicketCalled(**_meta(state, c), ticket_id=ticket_id, counter_id=counter.id)]


def _call_ticket(state: BranchState, c: CallTicket) -> list[EventBase]:
    return [TicketCalled(**_meta(state, c), ticket_id=c.ticket_id, counter_id=c.counter_id)]


def _counter_of(state: BranchState, ticket_id: str, allowed: set[TicketStatus], verb: str) -> str:
    """The counter holding the ticket, after checking it is in a state that has one."""
    ticket = state.ticket(ticket_id)
    rules.need_status(state, ticket, allowed, verb)
    assert ticket.counter_id is not None  # called and serving tickets are always at a counter
    return ticket.counter_id


def _recall(state: BranchState, c: Recall) -> list[EventBase]:
    counter_id = _counter_of(state, c.ticket_id, {S.CALLED}, "recalled")
    return [TicketRecalled(**_meta(state, c), ticket_id=c.ticket_id, counter_id=counter_id)]


def _start(state: BranchState, c: StartService) -> list[EventBase]:
    counter_id = _counter_of(state, c.ticket_id, {S.CALLED}, "started")
    return [ServiceStarted(**_meta(state, c), ticket_id=c.ticket_id, counter_id=counter_id)]


def _complete(state: BranchState, c: Complete) -> list[EventBase]:
    ticket = state.ticket(c.ticket_id)
    counter_id = _counter_of(state, ticket.id, {S.CALLED, S.SERVING}, "completed")
    done = TicketCompleted(
        **_meta(state, c), ticket_id=ticket.id, counter_id=counter_id, outcome=c.outcome
    )
    if ticket.status is S.CALLED:
        # Completing a called ticket means the service started and ended now. The start
        # is checked here; once it holds, the ticket is serving at that counter, which is
        # exactly what the completion needs.
        start = ServiceStarted(**_meta(state, c), ticket_id=ticket.id, counter_id=counter_id)
        rules.check(state, start)
        return [start, done]
    return [done]


def _no_show_cmd(state: BranchState, c: MarkNoShow) -> list[EventBase]:
    counter_id = _counter_of(state, c.ticket_id, {S.CALLED}, "marked as a no-show")
    return [TicketNoShow(**_meta(state, c), ticket_id=c.ticket_id, counter_id=counter_id)]


def _transfer(state: BranchState, c: Transfer) -> list[EventBase]:
    ticket = state.ticket(c.ticket_id)
    return [
        TicketTransferred(
            **_meta(state, c),
            ticket_id=ticket.id,
            from_service_id=ticket.service_id,
            to_service_id=c.to_service_id,
            position=c.position,
            counter_id=ticket.counter_id,
        )
    ]


def _park(state: BranchState, c: Park) -> list[EventBase]:
    counter_id = _counter_of(state, c.ticket_id, {S.CALLED, S.SERVING}, "parked")
    return [
        TicketParked(**_meta(state, c), ticket_id=c.ticket_id, counter_id=counter_id, note=c.note)
    ]


def _return(state: BranchState, c: ReturnTicket) -> list[EventBase]:
    return [TicketReturned(**_meta(state, c), ticket_id=c.ticket_id)]


def _cancel(state: BranchState, c: Cancel) -> list[EventBase]:
    return [TicketCancelled(**_meta(state, c), ticket_id=c.ticket_id, reason=c.reason)]


def _open(state: BranchState, c: OpenCounter) -> list[EventBase]:
    return [CounterOpened(**_meta(state, c), counter_id=c.counter_id)]


def _close(state: BranchState, c: CloseCounter) -> list[EventBase]:
    return [CounterClosed(**_meta(state, c), counter_id=c.counter_id)]


def _pause(state: BranchState, c: PauseCounter) -> list[EventBase]:
    reason = c.reason.strip()
    if not reason:
        raise InvalidValue("reason", f"pausing {state.counter(c.counter_id).name} needs a reason")
    return [CounterPaused(**_meta(state, c), counter_id=c.counter_id, reason=reason)]


def _resume(state: BranchState, c: ResumeCounter) -> list[EventBase]:
    return [CounterResumed(**_meta(state, c), counter_id=c.counter_id)]


_DECIDERS: dict[type[Command], Callable[[BranchState, Any], list[EventBase]]] = {
    IssueTicket: _issue,
    CallNext: _call_next,
    CallTicket: _call_ticket,
    Recall: _recall,
    StartService: _start,
    Complete: _complete,
    MarkNoShow: _no_show_cmd,
    Transfer: _transfer,
    Park: _park,
    ReturnTicket: _return,
    Cancel: _cancel,
    OpenCounter: _open,
    CloseCounter: _close,
    PauseCounter: _pause,
    ResumeCounter: _resume,
}
