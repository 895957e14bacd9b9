"""``/roles`` routes: the tenant's roles and their permissions.

Every route needs ``roles.manage`` tenant-wide. Nobody can put a permission
into a role that they do not hold tenant-wide themselves. Built-in roles
cannot be deleted and ``tenant_admin`` cannot be edited (409).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidValue
from core.permissions import unknown_permissions
from server.api.admin_common import refuse, service_errors
from server.api.deps import Principal, SessionDep, require
from server.models import Role
from server.services import audit, rbac

router = APIRouter(prefix="/roles", tags=["roles"])

MANAGE: Final = "roles.manage"
Manager = Annotated[Principal, Depends(require(MANAGE))]
_Codes = Annotated[list[str], Field(max_length=200)]


class RoleCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=500)
    permissions: _Codes


class RolePatch(BaseModel):
    description: str | None = Field(default=None, max_length=500)
    permissions: _Codes | None = None


class RoleOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    is_builtin: bool
    permissions: list[str]

    @classmethod
    def of(cls, role: Role) -> RoleOut:
        return cls(
            id=role.id,
            name=role.name,
            description=role.description,
            is_builtin=role.is_builtin,
            permissions=sorted(p.code for p in role.permissions),
        )


def _check_codes(
    session: Session, request: Request, principal: Principal, codes: list[str]
) -> None:
    unknown = unknown_permissions(set(codes))
    if unknown:
        raise InvalidValue("permissions", f"unknown permission codes: {', '.join(sorted(unknown))}")
    beyond = sorted(set(codes) - principal.grants.tenant_wide)
    if beyond:
        raise refuse(
            session,
            request,
            principal,
            MANAGE,
            f"You cannot grant what you do not hold tenant-wide: {', '.join(beyond)}.",
        )


def _role(session: Session, principal: Principal, role_id: uuid.UUID) -> Role:
    with service_errors():
        return rbac.get_role(session, principal.tenant_id, role_id)


@router.get("", response_model=list[RoleOut])
def list_roles(principal: Manager, session: SessionDep) -> list[RoleOut]:
    query = select(Role).where(Role.tenant_id == principal.tenant_id).order_by(Role.name)
    return [RoleOut.of(r) for r in session.scalars(query)]


@router.post("", response_model=RoleOut, status_code=201)
def create(body: RoleCreate, request: Request, principal: Manager, session: SessionDep) -> RoleOut:
    """A custom role; a name already in use is a 409."""
    _check_codes(session, request, principal, body.permissions)
    with service_errors():
        role = rbac.create_role(
            session,
            principal.tenant_id,
            body.name,
            body.permissions,
            description=body.description,
            actor=principal.actor(request),
        )
    return RoleOut.of(role)


@router.get("/{role_id}", response_model=RoleOut)
def read(role_id: uuid.UUID, principal: Manager, session: SessionDep) -> RoleOut:
    return RoleOut.of(_role(session, principal, role_id))


@router.patch("/{role_id}", response_model=RoleOut)
def update(
    role_id: uuid.UUID, body: RolePatch, request: Request, principal: Manager, session: SessionDep
) -> RoleOut:
    """Replace a role's permissions and/or description; members' rights change at once."""
    role = _role(session, principal, role_id)
    if body.permissions is not None:
        _check_codes(session, request, principal, body.permissions)
        with service_errors():
            role = rbac.update_role_permissions(
                session,
                principal.tenant_id,
                role.id,
                body.permissions,
                actor=principal.actor(request),
            )
    if body.description is not None and body.description.strip() != role.description:
        role.description = body.description.strip()
        session.flush()
        audit.record_as(
            session,
            principal.actor(request),
            tenant_id=principal.tenant_id,
            action="role.updated",
            object_type="role",
            object_id=str(role.id),
            details={"description": role.description},
        )
    return RoleOut.of(role)


@router.delete("/{role_id}", status_code=204, response_class=Response)
def delete(
    role_id: uuid.UUID, request: Request, principal: Manager, session: SessionDep
) -> Response:
    """Delete a custom role and take it from everyone who had it."""
    with service_errors():
        rbac.delete_role(session, principal.tenant_id, role_id, actor=principal.actor(request))
    return Response(status_code=204)
