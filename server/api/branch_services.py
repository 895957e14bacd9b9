"""``/branches/{branch_id}/services`` routes: the queues of a branch and their wait targets.

Every route needs ``services.manage`` at the branch (or tenant-wide). Services
are switched off with ``active: false`` rather than deleted: tickets refer to them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.admin_common import field_names, not_found, require_at_branch, service_errors
from server.api.deps import Principal, SessionDep
from server.models import Service
from server.services import audit
from server.services.branches import clean_text, create_service

router = APIRouter(prefix="/branches/{branch_id}/services", tags=["services"])

MANAGE: Final = "services.manage"
Manager = Annotated[Principal, Depends(require_at_branch(MANAGE))]
# Reading is queue work: a kiosk or a counter needs the list to issue and transfer.
Viewer = Annotated[Principal, Depends(require_at_branch("queue.view"))]


class ServiceCreate(BaseModel):
    code: str = Field(min_length=1, max_length=3, description="1 to 3 letters, e.g. 'A'")
    name: str = Field(min_length=1, max_length=200)
    target_wait_s: int | None = Field(default=None, gt=0, le=86_400)


class ServicePatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    target_wait_s: int | None = Field(default=None, gt=0, le=86_400)
    active: bool | None = None


class ServiceOut(BaseModel):
    id: uuid.UUID
    branch_id: uuid.UUID
    code: str
    name: str
    target_wait_s: int | None
    active: bool
    created_at: datetime

    @classmethod
    def of(cls, service: Service) -> ServiceOut:
        return cls(
            id=service.id,
            branch_id=service.branch_id,
            code=service.code,
            name=service.name,
            target_wait_s=service.target_wait_s,
            active=service.active,
            created_at=service.created_at,
        )


def _service(
    session: Session, principal: Principal, branch_id: uuid.UUID, service_id: uuid.UUID
) -> Service:
    service = session.scalar(
        select(Service).where(
            Service.id == service_id,
            Service.branch_id == branch_id,
            Service.tenant_id == principal.tenant_id,
        )
    )
    if service is None:
        raise not_found("service", service_id)
    return service


@router.get("", response_model=list[ServiceOut])
def list_services(branch_id: uuid.UUID, principal: Viewer, session: SessionDep) -> list[ServiceOut]:
    query = (
        select(Service)
        .where(Service.tenant_id == principal.tenant_id, Service.branch_id == branch_id)
        .order_by(Service.code)
    )
    return [ServiceOut.of(s) for s in session.scalars(query)]


@router.post("", response_model=ServiceOut, status_code=201)
def create(
    branch_id: uuid.UUID,
    body: ServiceCreate,
    request: Request,
    principal: Manager,
    session: SessionDep,
) -> ServiceOut:
    """A new service; its code is unique at the branch (409 otherwise)."""
    with service_errors(), field_names(service_code="code"):
        service = create_service(
            session,
            principal.tenant_id,
            branch_id,
            body.code,
            body.name,
            target_wait_s=body.target_wait_s,
            actor=principal.actor(request),
        )
    return ServiceOut.of(service)


@router.get("/{service_id}", response_model=ServiceOut)
def read(
    branch_id: uuid.UUID, service_id: uuid.UUID, principal: Viewer, session: SessionDep
) -> ServiceOut:
    return ServiceOut.of(_service(session, principal, branch_id, service_id))


@router.patch("/{service_id}", response_model=ServiceOut)
def update(
    branch_id: uuid.UUID,
    service_id: uuid.UUID,
    body: ServicePatch,
    request: Request,
    principal: Manager,
    session: SessionDep,
) -> ServiceOut:
    """Rename, change the wait target (``null`` clears it) or switch a service on or off."""
    service = _service(session, principal, branch_id, service_id)
    changes: dict[str, object] = {}
    if body.name is not None:
        changes["name"] = clean_text("name", body.name, 200)
    if "target_wait_s" in body.model_fields_set:
        changes["target_wait_s"] = body.target_wait_s
    if body.active is not None:
        changes["active"] = body.active
    changed = {k: v for k, v in changes.items() if getattr(service, k) != v}
    for key, value in changed.items():
        setattr(service, key, value)
    if changed:
        session.flush()
        audit.record_as(
            session,
            principal.actor(request),
            tenant_id=principal.tenant_id,
            action="service.updated",
            object_type="service",
            object_id=str(service.id),
            details={"branch_id": str(branch_id), **changed},
        )
    return ServiceOut.of(service)
