"""Preconditions of every event, shared by ``decide`` and ``apply``.

A check raises :class:`~core.errors.DomainError` with a sentence a member of
staff can act on, and never changes the state. ``apply`` runs the check of an
event before folding it, so the server can validate a pushed event simply by
applying it; ``decide`` runs the same checks on the events it is about to emit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.errors import DomainError
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
from core.state import BranchState, Counter, CounterStatus, Ticket, TicketStatus
from core.values import Channel, TicketNumber

S = TicketStatus


def describe(state: BranchState, ticket: Ticket) -> str:
    """Where a ticket stands, as a clause: 'A042 is being served at Counter 3'."""
    n = ticket.number
    where = state.counters[ticket.counter_id].name if ticket.counter_id in state.counters else "?"
    match ticket.status:
        case S.WAITING:
            return f"{n} is waiting"
        case S.CALLED:
            return f"{n} was already called at {where}"
        case S.SERVING:
            return f"{n} is being served at {where}"
        case S.PARKED:
            return f"{n} is parked"
        case S.DONE:
            return f"{n} has already been completed"
        case S.NO_SHOW:
            return f"{n} was marked as a no-show"
        case S.CANCELLED:
            return f"{n} was cancelled"
    raise AssertionError(ticket.status)  # pragma: no cover


def need_status(state: BranchState, ticket: Ticket, allowed: set[TicketStatus], verb: str) -> None:
    if ticket.status not in allowed:
        raise DomainError(f"{describe(state, ticket)}; it cannot be {verb}")


def need_at_counter(state: BranchState, ticket: Ticket, counter_id: str | None) -> None:
    if ticket.counter_id != counter_id:
        at = state.counter(counter_id).name if counter_id else "no counter"
        raise DomainError(f"{describe(state, ticket)}, not at {at}")


def need_free_counter(state: BranchState, counter: Counter) -> None:
    if counter.status is CounterStatus.CLOSED:
        raise DomainError(f"{counter.name} is closed; open it before calling a ticket")
    if counter.status is CounterStatus.PAUSED:
        raise DomainError(
            f"{counter.name} is paused ({counter.pause_reason}); resume it before calling a ticket"
        )
    if counter.current_ticket_id is not None:
        raise DomainError(
            f"{counter.name} is still on {state.tickets[counter.current_ticket_id].number}; "
            "complete, transfer or park it before calling another"
        )


def check_issued(state: BranchState, e: TicketIssued) -> None:
    service = state.service(e.service_id)
    if e.ticket_id in state.tickets:
        raise DomainError(f"Ticket {e.ticket_id} has already been issued")
    if TicketNumber.parse(e.number).prefix != service.code:
        raise DomainError(f"{e.number} does not belong to {service.name} (prefix {service.code})")
    if (e.business_day, e.number) in state.numbers:
        raise DomainError(f"{e.number} has already been issued on {e.business_day.isoformat()}")
    if e.channel is Channel.APPOINTMENT and e.appointment_at is None:
        raise DomainError(f"{e.number} is an appointment ticket; it needs an appointment time")
    if e.channel is not Channel.APPOINTMENT and e.appointment_at is not None:
        kind = e.channel.value.replace("_", "-")
        raise DomainError(
            f"{e.number} is a {kind} ticket; only appointment tickets have an appointment time"
        )


def check_called(state: BranchState, e: TicketCalled) -> None:
    ticket = state.ticket(e.ticket_id)
    counter = state.counter(e.counter_id)
    need_status(state, ticket, {S.WAITING}, "called")
    need_free_counter(state, counter)


def check_recalled(state: BranchState, e: TicketRecalled) -> None:
    ticket = state.ticket(e.ticket_id)
    need_status(state, ticket, {S.CALLED}, "recalled")
    need_at_counter(state, ticket, e.counter_id)


def check_started(state: BranchState, e: ServiceStarted) -> None:
    ticket = state.ticket(e.ticket_id)
    need_status(state, ticket, {S.CALLED}, "started")
    need_at_counter(state, ticket, e.counter_id)


def check_completed(state: BranchState, e: TicketCompleted) -> None:
    ticket = state.ticket(e.ticket_id)
    need_status(state, ticket, {S.SERVING}, "completed")
    need_at_counter(state, ticket, e.counter_id)


def check_no_show(state: BranchState, e: TicketNoShow) -> None:
    ticket = state.ticket(e.ticket_id)
    need_status(state, ticket, {S.CALLED}, "marked as a no-show")
    need_at_counter(state, ticket, e.counter_id)


def check_transferred(state: BranchState, e: TicketTransferred) -> None:
    ticket = state.ticket(e.ticket_id)
    need_status(state, ticket, {S.WAITING, S.CALLED, S.SERVING}, "transferred")
    if ticket.service_id != e.from_service_id:
        raise DomainError(f"{ticket.number} is not in service {e.from_service_id}")
    target = state.service(e.to_service_id)
    if target.id == ticket.service_id:
        raise DomainError(f"{ticket.number} is already in {target.name}")
    need_at_counter(state, ticket, e.counter_id)


def check_parked(state: BranchState, e: TicketParked) -> None:
    ticket = state.ticket(e.ticket_id)
    need_status(state, ticket, {S.CALLED, S.SERVING}, "parked")
    need_at_counter(state, ticket, e.counter_id)


def check_returned(state: BranchState, e: TicketReturned) -> None:
    need_status(state, state.ticket(e.ticket_id), {S.PARKED}, "returned to the queue")


def check_cancelled(state: BranchState, e: TicketCancelled) -> None:
    need_status(state, state.ticket(e.ticket_id), {S.WAITING, S.CALLED, S.PARKED}, "cancelled")


def check_opened(state: BranchState, e: CounterOpened) -> None:
    counter = state.counter(e.counter_id)
    if counter.status is CounterStatus.OPEN:
        raise DomainError(f"{counter.name} is already open")
    if counter.status is CounterStatus.PAUSED:
        raise DomainError(f"{counter.name} is paused; resume it instead of opening it")


def check_closed(state: BranchState, e: CounterClosed) -> None:
    counter = state.counter(e.counter_id)
    if counter.status is CounterStatus.CLOSED:
        raise DomainError(f"{counter.name} is already closed")
    _need_no_current(state, counter, "closing")


def check_paused(state: BranchState, e: CounterPaused) -> None:
    counter = state.counter(e.counter_id)
    if counter.status is not CounterStatus.OPEN:
        raise DomainError(f"{counter.name} is {counter.status.value}; only an open counter pauses")
    if not e.reason.strip():
        raise DomainError(f"Pausing {counter.name} needs a reason")
    _need_no_current(state, counter, "pausing")


def check_resumed(state: BranchState, e: CounterResumed) -> None:
    counter = state.counter(e.counter_id)
    if counter.status is not CounterStatus.PAUSED:
        raise DomainError(f"{counter.name} is {counter.status.value}, not paused")


def _need_no_current(state: BranchState, counter: Counter, doing: str) -> None:
    if counter.current_ticket_id is not None:
        number = state.tickets[counter.current_ticket_id].number
        raise DomainError(
            f"{counter.name} still has {number}; complete, transfer or park it before {doing}"
        )


CHECKS: dict[type[EventBase], Callable[[BranchState, Any], None]] = {
    TicketIssued: check_issued,
    TicketCalled: check_called,
    TicketRecalled: check_recalled,
    ServiceStarted: check_started,
    TicketCompleted: check_completed,
    TicketNoShow: check_no_show,
    TicketTransferred: check_transferred,
    TicketParked: check_parked,
    TicketReturned: check_returned,
    TicketCancelled: check_cancelled,
    CounterOpened: check_opened,
    CounterClosed: check_closed,
    CounterPaused: check_paused,
    CounterResumed: check_resumed,
}


def check(state: BranchState, event: EventBase) -> None:
    """Raise :class:`DomainError` if ``event`` cannot happen in ``state``."""
    CHECKS[type(event)](state, event)
