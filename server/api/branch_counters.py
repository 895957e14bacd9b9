"""``/branches/{branch_id}/counters`` routes: the desks of a branch and their work profiles.

Every route needs ``counters.manage`` at the branch (or tenant-wide). A work
profile lists services of the same branch in the order the counter calls
from them. Counters are switched off with ``active: false``, not deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidValue
from server.api.admin_common import not_found, require_at_branch, service_errors
from server.api.deps import Principal, SessionDep
from server.models import Counter, Service
from server.services import audit
from server.services.branches import clean_text, create_counter

router = APIRouter(prefix="/branches/{branch_id}/counters", tags=["counters"])

MANAGE: Final = "counters.manage"
Manager = Annotated[Principal, Depends(require_at_branch(MANAGE))]
# Reading is queue work: a kiosk or a counter needs the list to issue and transfer.
Viewer = Annotated[Principal, Depends(require_at_branch("queue.view"))]
_MAX_PROFILE: Final = 100


class CounterCreate(BaseModel):
    number: int = Field(ge=1, le=9999)
    name: str = Field(min_length=1, max_length=100)
    work_profile: list[uuid.UUID] = Field(default_factory=list, max_length=_MAX_PROFILE)


class CounterPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    work_profile: list[uuid.UUID] | None = Field(default=None, max_length=_MAX_PROFILE)
    active: bool | None = None


class CounterOut(BaseModel):
    id: uuid.UUID
    branch_id: uuid.UUID
    number: int
    name: str
    work_profile: list[uuid.UUID]
    active: bool
    created_at: datetime

    @classmethod
    def of(cls, counter: Counter) -> CounterOut:
        return cls(
            id=counter.id,
            branch_id=counter.branch_id,
            number=counter.number,
            name=counter.name,
            work_profile=[uuid.UUID(s) for s in counter.work_profile],
            active=counter.active,
            created_at=counter.created_at,
        )


def _counter(
    session: Session, principal: Principal, branch_id: uuid.UUID, counter_id: uuid.UUID
) -> Counter:
    counter = session.scalar(
        select(Counter).where(
            Counter.id == counter_id,
            Counter.branch_id == branch_id,
            Counter.tenant_id == principal.tenant_id,
        )
    )
    if counter is None:
        raise not_found("counter", counter_id)
    return counter


def _checked_profile(
    session: Session, tenant_id: uuid.UUID, branch_id: uuid.UUID, profile: Sequence[uuid.UUID]
) -> list[str]:
    if len(set(profile)) != len(profile):
        raise InvalidValue("work_profile", "lists a service twice")
    known = set(
        session.scalars(
            select(Service.id).where(Service.tenant_id == tenant_id, Service.branch_id == branch_id)
        )
    )
    unknown = [str(s) for s in profile if s not in known]
    if unknown:
        raise InvalidValue("work_profile", f"no such service at this branch: {', '.join(unknown)}")
    return [str(s) for s in profile]


@router.get("", response_model=list[CounterOut])
def list_counters(branch_id: uuid.UUID, principal: Viewer, session: SessionDep) -> list[CounterOut]:
    query = (
        select(Counter)
        .where(Counter.tenant_id == principal.tenant_id, Counter.branch_id == branch_id)
        .order_by(Counter.number)
    )
    return [CounterOut.of(c) for c in session.scalars(query)]


@router.post("", response_model=CounterOut, status_code=201)
def create(
    branch_id: uuid.UUID,
    body: CounterCreate,
    request: Request,
    principal: Manager,
    session: SessionDep,
) -> CounterOut:
    """A new counter; its number is unique at the branch (409 otherwise)."""
    with service_errors():
        counter = create_counter(
            session,
            principal.tenant_id,
            branch_id,
            body.number,
            body.name,
            body.work_profile,
            actor=principal.actor(request),
        )
    return CounterOut.of(counter)


@router.get("/{counter_id}", response_model=CounterOut)
def read(
    branch_id: uuid.UUID, counter_id: uuid.UUID, principal: Viewer, session: SessionDep
) -> CounterOut:
    return CounterOut.of(_counter(session, principal, branch_id, counter_id))


@router.patch("/{counter_id}", response_model=CounterOut)
def update(
    branch_id: uuid.UUID,
    counter_id: uuid.UUID,
    body: CounterPatch,
    request: Request,
    principal: Manager,
    session: SessionDep,
) -> CounterOut:
    """Rename a counter, replace its work profile or switch it on or off."""
    counter = _counter(session, principal, branch_id, counter_id)
    changes: dict[str, object] = {}
    if body.name is not None:
        changes["name"] = clean_text("name", body.name, 100)
    if body.work_profile is not None:
        changes["work_profile"] = _checked_profile(
            session, principal.tenant_id, branch_id, body.work_profile
        )
    if body.active is not None:
        changes["active"] = body.active
    changed = {k: v for k, v in changes.items() if getattr(counter, k) != v}
    for key, value in changed.items():
        setattr(counter, key, value)
    if changed:
        session.flush()
        audit.record_as(
            session,
            principal.actor(request),
            tenant_id=principal.tenant_id,
            action="counter.updated",
            object_type="counter",
            object_id=str(counter.id),
            details={"branch_id": str(branch_id), **changed},
        )
    return CounterOut.of(counter)
