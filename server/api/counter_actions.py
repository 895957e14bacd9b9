"""Counter routes: call the next ticket; open, pause, resume and close a counter."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from core import commands as cmd
from core.events import EventBase, TicketCalled
from server.api.deps import CallerDep, Principal, run_as_json
from server.api.queue_support import (
    CounterOut,
    PauseRequest,
    TicketOut,
    audited,
    authorize,
    counter_branch,
    ticket_out,
)
from server.models import utc_now
from server.services import queue
from server.services.queue_state import BRANCH_STATES

router = APIRouter(tags=["counters"])


@router.post("/counters/{counter_id}/call-next", response_model=TicketOut, tags=["counters"])
async def call_next(counter_id: uuid.UUID, request: Request, caller: CallerDep) -> Response:
    """Call the next ticket for this counter's work profile (priority first, then join time)."""
    return await run_as_json(request, caller, lambda s, p: _call_next(request, s, p, counter_id))


def _call_next(
    request: Request, session: Session, principal: Principal, counter_id: uuid.UUID
) -> TicketOut:
    branch_id = counter_branch(session, principal, counter_id)
    authorize(request, session, principal, "tickets.call", branch_id)

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
        return queue.ticket_view(
            session, principal.tenant_id, called.ticket_id, branch_id=branch_id
        )

    details = {"counter_id": counter_id}
    target = ("counter", counter_id)  # until a ticket is called
    return ticket_out(
        audited(request, session, principal, "ticket.call_next", target, details, act)
    )


async def _counter_action(
    request: Request,
    caller: CallerDep,
    counter_id: uuid.UUID,
    action: str,
    make: Callable[[str], cmd.Command],
    details: dict[str, Any] | None = None,
) -> Response:
    def work(session: Session, principal: Principal) -> CounterOut:
        return _act_on_counter(request, session, principal, counter_id, action, make, details)

    return await run_as_json(request, caller, work)


def _act_on_counter(
    request: Request,
    session: Session,
    principal: Principal,
    counter_id: uuid.UUID,
    action: str,
    make: Callable[[str], cmd.Command],
    details: dict[str, Any] | None,
) -> CounterOut:
    branch_id = counter_branch(session, principal, counter_id)
    authorize(request, session, principal, "counters.operate", branch_id)

    def act() -> list[EventBase]:
        return queue.execute(
            session,
            tenant_id=principal.tenant_id,
            branch_id=branch_id,
            command=make(str(counter_id)),
            actor_user_id=principal.user_id,
        )

    target = ("counter", counter_id)
    audited(request, session, principal, action, target, details or {}, act)
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
async def open_counter(counter_id: uuid.UUID, request: Request, caller: CallerDep) -> Response:
    """Open a closed counter: it can call tickets now."""
    return await _counter_action(
        request,
        caller,
        counter_id,
        "counter.open",
        lambda c: cmd.OpenCounter(at=utc_now(), counter_id=c),
    )


@router.post("/counters/{counter_id}/close", response_model=CounterOut, tags=["counters"])
async def close_counter(counter_id: uuid.UUID, request: Request, caller: CallerDep) -> Response:
    """Close a counter for the day or a shift."""
    return await _counter_action(
        request,
        caller,
        counter_id,
        "counter.close",
        lambda c: cmd.CloseCounter(at=utc_now(), counter_id=c),
    )


@router.post("/counters/{counter_id}/pause", response_model=CounterOut, tags=["counters"])
async def pause_counter(
    counter_id: uuid.UUID,
    body: PauseRequest,
    request: Request,
    caller: CallerDep,
) -> Response:
    """Pause an open counter, with a reason ("Lunch")."""
    return await _counter_action(
        request,
        caller,
        counter_id,
        "counter.pause",
        lambda c: cmd.PauseCounter(at=utc_now(), counter_id=c, reason=body.reason),
        {"reason": body.reason},
    )


@router.post("/counters/{counter_id}/resume", response_model=CounterOut, tags=["counters"])
async def resume_counter(counter_id: uuid.UUID, request: Request, caller: CallerDep) -> Response:
    """Resume a paused counter."""
    return await _counter_action(
        request,
        caller,
        counter_id,
        "counter.resume",
        lambda c: cmd.ResumeCounter(at=utc_now(), counter_id=c),
    )
