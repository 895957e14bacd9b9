"""``/branches`` routes: list, create, read and edit the tenant's branches.

Writes need ``branches.manage`` tenant-wide. Reading needs that or
``queue.view`` somewhere; a user whose ``queue.view`` is granted at some
branches only sees those. Branches are never deleted over the API (their
tickets and history hang off them), so DELETE answers 405.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from core.values import TimeZoneName
from server.api.admin_common import not_found, service_errors
from server.api.deps import Principal, PrincipalDep, SessionDep, require
from server.models import Branch
from server.services import audit
from server.services.branches import clean_text, create_branch

router = APIRouter(prefix="/branches", tags=["branches"])

MANAGE: Final = "branches.manage"
VIEW: Final = "queue.view"
_require_manage = require(MANAGE)


class BranchCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    code: str = Field(min_length=1, max_length=32)
    time_zone: str = Field(min_length=1, max_length=64)
    day_starts_at: int = Field(default=0, ge=0, le=1439)


class BranchPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    time_zone: str | None = Field(default=None, min_length=1, max_length=64)
    day_starts_at: int | None = Field(default=None, ge=0, le=1439)


class BranchOut(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    time_zone: str
    day_starts_at: int
    created_at: datetime

    @classmethod
    def of(cls, branch: Branch) -> BranchOut:
        return cls(
            id=branch.id,
            code=branch.code,
            name=branch.name,
            time_zone=branch.time_zone,
            day_starts_at=branch.day_starts_at,
            created_at=branch.created_at,
        )


def may_read(request: Request, principal: PrincipalDep, session: SessionDep) -> Principal:
    """Holders of ``queue.view`` anywhere, else of ``branches.manage`` (else an audited 403)."""
    if principal.grants.allows_somewhere(VIEW):
        return principal
    return _require_manage(request, principal, session)


Reader = Annotated[Principal, Depends(may_read)]
Manager = Annotated[Principal, Depends(_require_manage)]


def visible_branches(principal: Principal) -> frozenset[uuid.UUID] | None:
    """The branches the caller may see; None means every branch of the tenant."""
    if principal.grants.allows(MANAGE):
        return None
    return principal.grants.branches_for(VIEW)


def _branch(session: SessionDep, principal: Principal, branch_id: uuid.UUID) -> Branch:
    branch = session.scalar(
        select(Branch).where(Branch.id == branch_id, Branch.tenant_id == principal.tenant_id)
    )
    visible = visible_branches(principal)
    if branch is None or (visible is not None and branch.id not in visible):
        raise not_found("branch", branch_id)
    return branch


@router.get("", response_model=list[BranchOut])
def list_branches(principal: Reader, session: SessionDep) -> list[BranchOut]:
    """The branches the caller may see, by code."""
    query = select(Branch).where(Branch.tenant_id == principal.tenant_id).order_by(Branch.code)
    visible = visible_branches(principal)
    if visible is not None:
        query = query.where(Branch.id.in_(list(visible)))
    return [BranchOut.of(b) for b in session.scalars(query)]


@router.post("", response_model=BranchOut, status_code=201)
def create(
    body: BranchCreate, request: Request, principal: Manager, session: SessionDep
) -> BranchOut:
    """A new branch; its code is unique in the tenant (409 otherwise)."""
    with service_errors():
        branch = create_branch(
            session,
            principal.tenant_id,
            body.name,
            body.code,
            body.time_zone,
            day_starts_at=body.day_starts_at,
            actor=principal.actor(request),
        )
    return BranchOut.of(branch)


@router.get("/{branch_id}", response_model=BranchOut)
def read(branch_id: uuid.UUID, principal: Reader, session: SessionDep) -> BranchOut:
    return BranchOut.of(_branch(session, principal, branch_id))


@router.patch("/{branch_id}", response_model=BranchOut)
def update(
    branch_id: uuid.UUID,
    body: BranchPatch,
    request: Request,
    principal: Manager,
    session: SessionDep,
) -> BranchOut:
    """Rename a branch or change its zone or day start; the code stays (it is in reports)."""
    branch = _branch(session, principal, branch_id)
    changes: dict[str, object] = {}
    if body.name is not None:
        changes["name"] = clean_text("name", body.name, 200)
    if body.time_zone is not None:
        changes["time_zone"] = TimeZoneName(body.time_zone).value
    if body.day_starts_at is not None:
        changes["day_starts_at"] = body.day_starts_at
    changed = {k: v for k, v in changes.items() if getattr(branch, k) != v}
    for key, value in changed.items():
        setattr(branch, key, value)
    if changed:
        session.flush()
        audit.record_as(
            session,
            principal.actor(request),
            tenant_id=principal.tenant_id,
            action="branch.updated",
            object_type="branch",
            object_id=str(branch.id),
            details=changed,
        )
    return BranchOut.of(branch)
