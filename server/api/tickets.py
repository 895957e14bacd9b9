"""Ticket routes: issue a ticket, look it up, and call, serve, transfer, park or cancel it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from core import commands as cmd
from server.api.deps import CallerDep, Principal, run_as_json
from server.api.queue_support import (
    CallRequest,
    CancelRequest,
    CompleteRequest,
    IssueRequest,
    ParkRequest,
    TicketOut,
    TransferRequest,
    audited,
    authorize,
    not_found_is_404,
    ticket_branch,
    ticket_out,
)
from server.models import utc_now
from server.services import queue
from server.services.queue_state import find_branch

router = APIRouter(tags=["tickets"])


@router.post("/branches/{branch_id}/tickets", status_code=201, response_model=TicketOut)
async def issue(
    branch_id: uuid.UUID, body: IssueRequest, request: Request, caller: CallerDep
) -> Response:
    """Issue a ticket for a service of the branch; answers its number, place and wait."""
    return await run_as_json(
        request, caller, lambda s, p: _issue(request, s, p, branch_id, body), 201
    )


def _issue(
    request: Request,
    session: Session,
    principal: Principal,
    branch_id: uuid.UUID,
    body: IssueRequest,
) -> TicketOut:
    with not_found_is_404():
        find_branch(session, principal.tenant_id, branch_id)
    authorize(request, session, principal, "tickets.issue", branch_id)
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
    view = audited(request, session, principal, "ticket.issue", target, details, act)
    return ticket_out(view)


@router.get("/tickets/{ticket_id}", response_model=TicketOut)
async def get_ticket(ticket_id: uuid.UUID, request: Request, caller: CallerDep) -> Response:
    """Where a ticket stands: status, counter, place in the queue and estimated wait."""

    def work(session: Session, principal: Principal) -> TicketOut:
        branch_id = ticket_branch(session, principal, ticket_id)
        authorize(request, session, principal, "queue.view", branch_id)
        with not_found_is_404():
            view = queue.ticket_view(session, principal.tenant_id, ticket_id, branch_id=branch_id)
            return ticket_out(view)

    return await run_as_json(request, caller, work)


async def _ticket_action(
    request: Request,
    caller: CallerDep,
    ticket_id: uuid.UUID,
    *,
    action: str,
    permission: str,
    make: Callable[[str], cmd.Command],
    details: dict[str, Any] | None = None,
) -> Response:
    def work(session: Session, principal: Principal) -> TicketOut:
        return _act_on_ticket(
            request, session, principal, ticket_id, action, permission, make, details
        )

    return await run_as_json(request, caller, work)


def _act_on_ticket(
    request: Request,
    session: Session,
    principal: Principal,
    ticket_id: uuid.UUID,
    action: str,
    permission: str,
    make: Callable[[str], cmd.Command],
    details: dict[str, Any] | None,
) -> TicketOut:
    branch_id = ticket_branch(session, principal, ticket_id)
    authorize(request, session, principal, permission, branch_id)

    def act() -> queue.TicketView:
        queue.execute(
            session,
            tenant_id=principal.tenant_id,
            branch_id=branch_id,
            command=make(str(ticket_id)),
            actor_user_id=principal.user_id,
        )
        return queue.ticket_view(session, principal.tenant_id, ticket_id, branch_id=branch_id)

    target = ("ticket", ticket_id)
    view = audited(request, session, principal, action, target, details or {}, act)
    return ticket_out(view)


@router.post("/tickets/{ticket_id}/call", response_model=TicketOut)
async def call(
    ticket_id: uuid.UUID,
    body: CallRequest,
    request: Request,
    caller: CallerDep,
) -> Response:
    """Call this ticket to a counter, out of queue order."""
    counter = str(body.counter_id)
    return await _ticket_action(
        request,
        caller,
        ticket_id,
        action="ticket.call",
        permission="tickets.call",
        make=lambda t: cmd.CallTicket(at=utc_now(), ticket_id=t, counter_id=counter),
        details={"counter_id": counter},
    )


@router.post("/tickets/{ticket_id}/recall", response_model=TicketOut)
async def recall(ticket_id: uuid.UUID, request: Request, caller: CallerDep) -> Response:
    """Call a called ticket again (the customer did not come yet)."""
    return await _ticket_action(
        request,
        caller,
        ticket_id,
        action="ticket.recall",
        permission="tickets.call",
        make=lambda t: cmd.Recall(at=utc_now(), ticket_id=t),
    )


@router.post("/tickets/{ticket_id}/start", response_model=TicketOut)
async def start(ticket_id: uuid.UUID, request: Request, caller: CallerDep) -> Response:
    """The customer arrived at the counter: service starts."""
    return await _ticket_action(
        request,
        caller,
        ticket_id,
        action="ticket.start",
        permission="tickets.serve",
        make=lambda t: cmd.StartService(at=utc_now(), ticket_id=t),
    )


@router.post("/tickets/{ticket_id}/complete", response_model=TicketOut)
async def complete(
    ticket_id: uuid.UUID,
    request: Request,
    caller: CallerDep,
    body: CompleteRequest | None = None,
) -> Response:
    """Service ended, with an outcome (served by default)."""
    outcome = (body or CompleteRequest()).outcome
    return await _ticket_action(
        request,
        caller,
        ticket_id,
        action="ticket.complete",
        permission="tickets.serve",
        make=lambda t: cmd.Complete(at=utc_now(), ticket_id=t, outcome=outcome),
        details={"outcome": outcome.value},
    )


@router.post("/tickets/{ticket_id}/no-show", response_model=TicketOut)
async def no_show(ticket_id: uuid.UUID, request: Request, caller: CallerDep) -> Response:
    """The called customer did not come."""
    return await _ticket_action(
        request,
        caller,
        ticket_id,
        action="ticket.no_show",
        permission="tickets.serve",
        make=lambda t: cmd.MarkNoShow(at=utc_now(), ticket_id=t),
    )


@router.post("/tickets/{ticket_id}/transfer", response_model=TicketOut)
async def transfer(
    ticket_id: uuid.UUID,
    body: TransferRequest,
    request: Request,
    caller: CallerDep,
) -> Response:
    """Move the ticket to another service's queue: at the front, the back or by join time."""
    to_service = str(body.service_id)
    return await _ticket_action(
        request,
        caller,
        ticket_id,
        action="ticket.transfer",
        permission="tickets.transfer",
        make=lambda t: cmd.Transfer(
            at=utc_now(), ticket_id=t, to_service_id=to_service, position=body.position
        ),
        details={"service_id": to_service, "position": body.position.value},
    )


@router.post("/tickets/{ticket_id}/park", response_model=TicketOut)
async def park(
    ticket_id: uuid.UUID,
    request: Request,
    caller: CallerDep,
    body: ParkRequest | None = None,
) -> Response:
    """Set the ticket aside (the customer fetches a document) until it is returned."""
    note = body.note if body else None
    return await _ticket_action(
        request,
        caller,
        ticket_id,
        action="ticket.park",
        permission="tickets.park",
        make=lambda t: cmd.Park(at=utc_now(), ticket_id=t, note=note),
    )


@router.post("/tickets/{ticket_id}/return", response_model=TicketOut)
async def return_ticket(ticket_id: uuid.UUID, request: Request, caller: CallerDep) -> Response:
    """Put a parked ticket back in its queue."""
    return await _ticket_action(
        request,
        caller,
        ticket_id,
        action="ticket.return",
        permission="tickets.park",
        make=lambda t: cmd.ReturnTicket(at=utc_now(), ticket_id=t),
    )


@router.post("/tickets/{ticket_id}/cancel", response_model=TicketOut)
async def cancel(
    ticket_id: uuid.UUID,
    request: Request,
    caller: CallerDep,
    body: CancelRequest | None = None,
) -> Response:
    """Take the ticket out of the queue for good."""
    reason = body.reason if body else None
    return await _ticket_action(
        request,
        caller,
        ticket_id,
        action="ticket.cancel",
        permission="tickets.cancel",
        make=lambda t: cmd.Cancel(at=utc_now(), ticket_id=t, reason=reason),
        details={"reason": reason} if reason else None,
    )
