"""Shared parts of the queue routes: request and response schemas, tenant lookups,
permission checks and the audit wrapper.

Every queue route finds the object in the caller's tenant first (another tenant's
id is 404 before any talk of permissions), then checks the permission at the
object's branch, then hands a :mod:`core.commands` command to
:func:`server.services.queue.execute`. Refusals of the core are 409 with its own
sentence. Every action is audited, the refusals too: a refusal is committed with
its audit row, then answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core.errors import DomainError
from core.events import Customer
from core.state import CounterStatus, TicketStatus
from core.values import Channel, Outcome, PriorityClass, TransferPosition
from server.api.deps import Principal
from server.api.params import UtcInstant
from server.api.problems import Problem
from server.db import DriverQuery, as_uuid_value
from server.models import Counter
from server.services import audit, queue
from server.services.errors import NotFound

T = TypeVar("T")

Note = Annotated[str, Field(max_length=500)]


def priority(value: Any) -> PriorityClass:
    if isinstance(value, PriorityClass):
        return value
    return PriorityClass.parse(value)  # InvalidValue is a ValueError: a 422 naming "priority"


Priority = Annotated[
    PriorityClass,
    BeforeValidator(priority),
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


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IssueRequest(RequestBody):
    service_id: uuid.UUID
    channel: Channel = Channel.WALK_IN
    priority: Priority = PriorityClass.NORMAL
    customer: Customer | None = None
    # Which reminders the customer asked for; kept with the issue record until
    # notifications are sent from it.
    notify: bool | list[Literal["email", "sms", "whatsapp"]] = False
    appointment_at: UtcInstant | None = Field(default=None, validate_default=True)

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


class CallRequest(RequestBody):
    counter_id: uuid.UUID


class CompleteRequest(RequestBody):
    outcome: Outcome = Outcome.SERVED


class TransferRequest(RequestBody):
    service_id: uuid.UUID
    position: TransferPosition = TransferPosition.BACK


class ParkRequest(RequestBody):
    note: Note | None = None


class CancelRequest(RequestBody):
    reason: Note | None = None


class PauseRequest(RequestBody):
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
def not_found_is_404() -> Iterator[None]:
    try:
        yield
    except NotFound as exc:
        raise Problem(404, str(exc)) from None


def ticket_branch(session: Session, principal: Principal, ticket_id: uuid.UUID) -> uuid.UUID:
    branch_id = queue.ticket_branch_id(session, principal.tenant_id, ticket_id)
    if branch_id is None:
        raise Problem(404, f"There is no ticket {ticket_id}")
    return branch_id


_COUNTERS = Counter.__table__.c
_COUNTER_BRANCH = DriverQuery(
    select(_COUNTERS.branch_id).where(
        _COUNTERS.id == bindparam("counter_id"), _COUNTERS.tenant_id == bindparam("tenant_id")
    )
)


def counter_branch(session: Session, principal: Principal, counter_id: uuid.UUID) -> uuid.UUID:
    params = {"counter_id": counter_id, "tenant_id": principal.tenant_id}
    row = _COUNTER_BRANCH.first(session.connection(), params)
    if row is None:
        raise Problem(404, f"There is no counter {counter_id}")
    return as_uuid_value(row[0])


def authorize(
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


def audited(
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
        with not_found_is_404():
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


def ticket_out(view: queue.TicketView) -> TicketOut:
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
