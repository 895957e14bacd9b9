"""Ticket and counter routes: issue, look up and move tickets; open, pause and close counters.

Every route finds the object in the caller's tenant first (another tenant's id is
404 before any talk of permissions), then checks the permission at the object's
branch, then hands a :mod:`core.commands` command to :func:`server.services.queue.execute`.
Refusals of the core are 409 with its own sentence. Every action is audited, the
refusals too: a refusal is committed with its audit row, then answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Request
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import commands as cmd
from core.errors import DomainError
from core.events import Customer, EventBase, TicketCalled
from core.state import CounterStatus, TicketStatus
from core.values import Channel, Outcome, PriorityClass, TransferPosition
from server.api.deps import Principal, PrincipalDep, SessionDep
from server.api.problems import Problem
from server.models import Counter, utc_now
from server.models import Ticket as TicketRow
from server.services import audit, queue
from server.services.errors import NotFound
from server.services.queue_state import BRANCH_STATES, find_branch

router = APIRouter(tags=["tickets"])

T = TypeVar("T")

Note = Annotated[str, Field(max_length=500)]


def _priority(value: Any) -> PriorityClass:
    if isinstance(value, PriorityClass):
        return value
    return PriorityClass.parse(value)  # InvalidValue is a ValueError: a 422 naming "priority"


Priority = Annotated[
    PriorityClass,
    BeforeValidator(_priority),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "enum": [p.name.lower() for p in PriorityClass]},
                {"type": "integer", "enum": [p.value for p in PriorityClass]},
            ],
            "default": "normal",
        }
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IssueRequest(_Body):
    service_id: uuid.UUID
    channel: Channel = Channel.WALK_IN
    priority: Priority = PriorityClass.NORMAL
    customer: Customer | None = None
    # Which reminders the customer asked for; kept with the issue record until
    # notifications are sent from it.
    notify: bool | list[Literal["email", "sms", "whatsapp"]] = False
    appointment_at: AwareDatetime | None = Field(default=None, validate_default=True)

    @field_validator("appointment_at")
    @classmethod
    def _only_for_appointments(
        cls, value: datetime | None, info: ValidationInfo
    ) -> datetime | None:
        channel = info.data.get("channel")
        if channel is Channel.APPOINTMENT and value is None:
            raise ValueError("an appointment ticket needs an appointment time")
        if channel is not None and channel is not Channel.APPOINTMENT and value is not None:
            raise ValueError("only appointment tickets have an appointment time")
        return value


class CallRequest(_Body):
    counter_id: uuid.UUID


class CompleteRequest(_Body):
    outcome: Outcome = Outcome.SERVED


class TransferRequest(_Body):
    service_id: uuid.UUID
    position: TransferPosition = TransferPosition.BACK


class ParkRequest(_Body):
    note: Note | None = None


class CancelRequest(_Body):
    reason: Note | None = None


class PauseRequest(_Body):
    reason: Annotated[str, Field(min_length=1, max_length=100)]


class TicketOut(BaseModel):
    id: uuid.UUID
    number: str
    status: TicketStatus
    service_id: uuid.UUID
    counter_id: uuid.UUID | None
    position: int | None
    estimated_wait_s: int | None
    issued_at: datetime
    called_at: datetime | None


class CounterOut(BaseModel):
    id: uuid.UUID
    name: str
    status: CounterStatus
    pause_reason: str | None
    current_ticket_id: uuid.UUID | None


# --- lookups, permissions, audit ------------------------------------------------


@contextmanager
def _not_found_is_404() -> Iterator[None]:
    try:
        yield
    except NotFound as exc:
        raise Problem(404, str(exc)) from None


def _ticket_branch(session: Session, principal: Principal, ticket_id: uuid.UUID) -> uuid.UUID:
    branch_id = session.scalar(
        select(TicketRow.branch_id).where(
            TicketRow.id == ticket_id, TicketRow.tenant_id == principal.tenant_id
        )
    )
    if branch_id is None:
        raise Problem(404, f"There is no ticket {ticket_id}")
    return branch_id


def _counter_branch(session: Session, principal: Principal, counter_id: uuid.UUID) -> uuid.UUID:
    branch_id = session.scalar(
        select(Counter.branch_id).where(
            Counter.id == counter_id, Counter.tenant_id == principal.tenant_id
        )
    )
    if branch_id is None:
        raise Problem(404, f"There is no counter {counter_id}")
    return branch_id


def _authorize(
    request: Request,
    session: Session,
    principal: Principal,
    permission: str,
    branch_id: uuid.UUID,
) -> None:
    """403 (audited and committed) unless the caller holds ``permission`` at the branch."""
    if principal.grants.allows(permission, branch_id):
        return
    audit.record_as(
        session,
        principal.actor(request),
        tenant_id=principal.tenant_id,
        action="authz.denied",
        result="denied",
        reason=permission,
        details={"method": request.method, "path": request.url.path, "branch_id": branch_id},
    )
    session.commit()
    raise Problem(403, "You are not allowed to do this.", slug="forbidden")


def _audited(
    request: Request,
    session: Session,
    principal: Principal,
    action: str,
    target: tuple[str, uuid.UUID],
    details: dict[str, Any],
    act: Callable[[], T],
) -> T:
    """Run ``act`` and audit it; a refusal of the core is audited, committed, then raised.

    The audit row names ``target``, or the ticket ``act`` answers with when it succeeds.
    """
    object_type, object_id = target
    try:
        with _not_found_is_404():
            result = act()
    except DomainError as exc:
        session.rollback()  # nothing was written; the audit row starts a fresh transaction
        audit.record_as(
            session,
            principal.actor(request),
            tenant_id=principal.tenant_id,
            action=action,
            result="failure",
            object_type=object_type,
            object_id=str(object_id),
            reason=str(exc),
            details=details,
        )
        session.commit()
        raise
    if isinstance(result, queue.TicketView):
        object_type, object_id = "ticket", result.id
    audit.record_as(
        session,
        principal.actor(request),
        tenant_id=principal.tenant_id,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        details=details,
    )
    return result


def _ticket_out(view: queue.TicketView) -> TicketOut:
    return TicketOut(
        id=view.id,
        number=view.number,
        status=view.status,
        service_id=view.service_id,
        counter_id=view.counter_id,
        position=view.position,
        estimated_wait_s=view.estimated_wait_s,
        issued_at=view.issued_at,
        called_at=view.called_at,
    )


# --- tickets --------------------------------------------------------------------


@router.post("/branches/{branch_id}/tickets", status_code=201, response_model=TicketOut)
def issue(
    branch_id: uuid.UUID,
    body: IssueRequest,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> TicketOut:
    """Issue a ticket for a service of the branch; answers its number, place and wait."""
    with _not_found_is_404():
        find_branch(session, principal.tenant_id, branch_id)
    _authorize(request, session, principal, "tickets.issue", branch_id)
    details = {
        "branch_id": branch_id,
        "service_id": body.service_id,
        "channel": body.channel.value,
        "priority": body.priority.name.lower(),
        "notify": body.notify,
    }

    def act() -> queue.TicketView:
        return queue.issue_ticket(
            session,
            tenant_id=principal.tenant_id,
            branch_id=branch_id,
            service_id=body.service_id,
            channel=body.channel,
            priority=body.priority,
            customer=body.customer,
            appointment_at=body.appointment_at,
            actor_user_id=principal.user_id,
        )

    target = ("branch", branch_id)  # until the ticket exists
    view = _audited(request, session, principal, "ticket.issue", target, details, act)
    return _ticket_out(view)


@router.get("/tickets/{ticket_id}", response_model=TicketOut)
def get_ticket(
    ticket_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> TicketOut:
    """Where a ticket stands: status, counter, place in the queue and estimated wait."""
    branch_id = _ticket_branch(session, principal, ticket_id)
    _authorize(request, session, principal, "queue.view", branch_id)
    with _not_found_is_404():
        return _ticket_out(queue.ticket_view(session, principal.tenant_id, ticket_id))


def _ticket_action(
    request: Request,
    session: Session,
    principal: Principal,
    ticket_id: uuid.UUID,
    *,
    action: str,
    permission: str,
    make: Callable[[str], cmd.Command],
    details: dict[str, Any] | None = None,
) -> TicketOut:
    branch_id = _ticket_branch(session, principal, ticket_id)
    _authorize(request, session, principal, permission, branch_id)

    def act() -> queue.TicketView:
        queue.execute(
            session,
            tenant_id=principal.tenant_id,
            branch_id=branch_id,
            command=make(str(ticket_id)),
            actor_user_id=principal.user_id,
        )
        return queue.ticket_view(session, principal.tenant_id, ticket_id)

    target = ("ticket", ticket_id)
    view = _audited(request, session, principal, action, target, details or {}, act)
    return _ticket_out(view)


@router.post("/tickets/{ticket_id}/call", response_model=TicketOut)
def call(
    ticket_id: uuid.UUID,
    body: CallRequest,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> TicketOut:
    """Call this ticket to a counter, out of queue order."""
    counter = str(body.counter_id)
    return _ticket_action(
        request,
        session,
        principal,
        ticket_id,
        action="ticket.call",
        permission="tickets.call",
        make=lambda t: cmd.CallTicket(at=utc_now(), ticket_id=t, counter_id=counter),
        details={"counter_id": counter},
    )


@router.post("/tickets/{ticket_id}/recall", response_model=TicketOut)
def recall(
    ticket_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> TicketOut:
    """Call a called ticket again (the customer did not come yet)."""
    return _ticket_action(
        request,
        session,
        principal,
        ticket_id,
        action="ticket.recall",
        permission="tickets.call",
        make=lambda t: cmd.Recall(at=utc_now(), ticket_id=t),
    )


@router.post("/tickets/{ticket_id}/start", response_model=TicketOut)
def start(
    ticket_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> TicketOut:
    """The customer arrived at the counter: service starts."""
    return _ticket_action(
        request,
        session,
        principal,
        ticket_id,
        action="ticket.start",
        permission="tickets.serve",
        make=lambda t: cmd.StartService(at=utc_now(), ticket_id=t),
    )


@router.post("/tickets/{ticket_id}/complete", response_model=TicketOut)
def complete(
    ticket_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    body: CompleteRequest | None = None,
) -> TicketOut:
    """Service ended, with an outcome (served by default)."""
    outcome = (body or CompleteRequest()).outcome
    return _ticket_action(
        request,
        session,
        principal,
        ticket_id,
        action="ticket.complete",
        permission="tickets.serve",
        make=lambda t: cmd.Complete(at=utc_now(), ticket_id=t, outcome=outcome),
        details={"outcome": outcome.value},
    )


@router.post("/tickets/{ticket_id}/no-show", response_model=TicketOut)
def no_show(
    ticket_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> TicketOut:
    """The called customer did not come."""
    return _ticket_action(
        request,
        session,
        principal,
        ticket_id,
        action="ticket.no_show",
        permission="tickets.serve",
        make=lambda t: cmd.MarkNoShow(at=utc_now(), ticket_id=t),
    )


@router.post("/tickets/{ticket_id}/transfer", response_model=TicketOut)
def transfer(
    ticket_id: uuid.UUID,
    body: TransferRequest,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> TicketOut:
    """Move the ticket to another service's queue: at the front, the back or by join time."""
    to_service = str(body.service_id)
    return _ticket_action(
        request,
        session,
        principal,
        ticket_id,
        action="ticket.transfer",
        permission="tickets.transfer",
        make=lambda t: cmd.Transfer(
            at=utc_now(), ticket_id=t, to_service_id=to_service, position=body.position
        ),
        details={"service_id": to_service, "position": body.position.value},
    )


@router.post("/tickets/{ticket_id}/park", response_model=TicketOut)
def park(
    ticket_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    body: ParkRequest | None = None,
) -> TicketOut:
    """Set the ticket aside (the customer fetches a document) until it is returned."""
    note = body.note if body else None
    return _ticket_action(
        request,
        session,
        principal,
        ticket_id,
        action="ticket.park",
        permission="tickets.park",
        make=lambda t: cmd.Park(at=utc_now(), ticket_id=t, note=note),
    )


@router.post("/tickets/{ticket_id}/return", response_model=TicketOut)
def return_ticket(
    ticket_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> TicketOut:
    """Put a parked ticket back in its queue."""
    return _ticket_action(
        request,
        session,
        principal,
        ticket_id,
        action="ticket.return",
        permission="tickets.park",
        make=lambda t: cmd.ReturnTicket(at=utc_now(), ticket_id=t),
    )


@router.post("/tickets/{ticket_id}/cancel", response_model=TicketOut)
def cancel(
    ticket_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    body: CancelRequest | None = None,
) -> TicketOut:
    """Take the ticket out of the queue for good."""
    reason = body.reason if body else None
    return _ticket_action(
        request,
        session,
        principal,
        ticket_id,
        action="ticket.cancel",
        permission="tickets.cancel",
        make=lambda t: cmd.Cancel(at=utc_now(), ticket_id=t, reason=reason),
        details={"reason": reason} if reason else None,
    )


# --- counters -------------------------------------------------------------------


@router.post("/counters/{counter_id}/call-next", response_model=TicketOut, tags=["counters"])
def call_next(
    counter_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> TicketOut:
    """Call the next ticket for this counter's work profile (priority first, then join time)."""
    branch_id = _counter_branch(session, principal, counter_id)
    _authorize(request, session, principal, "tickets.call", branch_id)

    def act() -> queue.TicketView:
        events = queue.execute(
            session,
            tenant_id=principal.tenant_id,
            branch_id=branch_id,
            command=cmd.CallNext(at=utc_now(), counter_id=str(counter_id)),
            actor_user_id=principal.user_id,
        )
        called = events[0]
        assert isinstance(called, TicketCalled)
        return queue.ticket_view(session, principal.tenant_id, called.ticket_id)

    details = {"counter_id": counter_id}
    target = ("counter", counter_id)  # until a ticket is called
    return _ticket_out(
        _audited(request, session, principal, "ticket.call_next", target, details, act)
    )


def _counter_action(
    request: Request,
    session: Session,
    principal: Principal,
    counter_id: uuid.UUID,
    action: str,
    make: Callable[[str], cmd.Command],
    details: dict[str, Any] | None = None,
) -> CounterOut:
    branch_id = _counter_branch(session, principal, counter_id)
    _authorize(request, session, principal, "counters.operate", branch_id)

    def act() -> list[EventBase]:
        return queue.execute(
            session,
            tenant_id=principal.tenant_id,
            branch_id=branch_id,
            command=make(str(counter_id)),
            actor_user_id=principal.user_id,
        )

    target = ("counter", counter_id)
    _audited(request, session, principal, action, target, details or {}, act)
    counter = BRANCH_STATES.load(session, principal.tenant_id, branch_id).counters[str(counter_id)]
    current = counter.current_ticket_id
    return CounterOut(
        id=counter_id,
        name=counter.name,
        status=counter.status,
        pause_reason=counter.pause_reason,
        current_ticket_id=uuid.UUID(current) if current else None,
    )


@router.post("/counters/{counter_id}/open", response_model=CounterOut, tags=["counters"])
def open_counter(
    counter_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> CounterOut:
    """Open a closed counter: it can call tickets now."""
    return _counter_action(
        request,
        session,
        principal,
        counter_id,
        "counter.open",
        lambda c: cmd.OpenCounter(at=utc_now(), counter_id=c),
    )


@router.post("/counters/{counter_id}/close", response_model=CounterOut, tags=["counters"])
def close_counter(
    counter_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> CounterOut:
    """Close a counter for the day or a shift."""
    return _counter_action(
        request,
        session,
        principal,
        counter_id,
        "counter.close",
        lambda c: cmd.CloseCounter(at=utc_now(), counter_id=c),
    )


@router.post("/counters/{counter_id}/pause", response_model=CounterOut, tags=["counters"])
def pause_counter(
    counter_id: uuid.UUID,
    body: PauseRequest,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> CounterOut:
    """Pause an open counter, with a reason ("Lunch")."""
    return _counter_action(
        request,
        session,
        principal,
        counter_id,
        "counter.pause",
        lambda c: cmd.PauseCounter(at=utc_now(), counter_id=c, reason=body.reason),
        {"reason": body.reason},
    )


@router.post("/counters/{counter_id}/resume", response_model=CounterOut, tags=["counters"])
def resume_counter(
    counter_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> CounterOut:
    """Resume a paused counter."""
    return _counter_action(
        request,
        session,
        principal,
        counter_id,
        "counter.resume",
        lambda c: cmd.ResumeCounter(at=utc_now(), counter_id=c),
    )
