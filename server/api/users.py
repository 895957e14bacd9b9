"""``/users`` routes: list, create, edit and disable users, and assign their roles.

Reading needs ``users.view``, changing ``users.manage``, both tenant-wide.
Password hashes never leave the service. Disabling a user ends their sessions
and stops their API keys; the tenant's last enabled administrator cannot be
disabled. A role is only given by someone who holds all of its permissions
where it is given, so ``users.manage`` alone cannot raise anyone's rights.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.errors import InvalidValue
from core.permissions import TENANT_ADMIN
from core.values import EmailAddress
from server.api.admin_common import DEFAULT_PAGE, MAX_PAGE, not_found, refuse, service_errors
from server.api.deps import Principal, SessionDep, require
from server.api.problems import Problem
from server.models import Role, User, UserRole
from server.security.passwords import PasswordPolicyError
from server.services import audit, rbac, tenants
from server.services.auth import end_sessions
from server.services.errors import NotFound

router = APIRouter(prefix="/users", tags=["users"])

Viewer = Annotated[Principal, Depends(require("users.view"))]
Manager = Annotated[Principal, Depends(require("users.manage"))]
_DISPLAY_NAME_MAX: Final = 200


class RoleGrant(BaseModel):
    role_id: uuid.UUID
    branch_id: uuid.UUID | None = None


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=4096)
    display_name: str = Field(default="", max_length=_DISPLAY_NAME_MAX)
    email: str | None = Field(default=None, max_length=320)
    roles: list[RoleGrant] = Field(default_factory=list, max_length=50)


class UserPatch(BaseModel):
    display_name: str | None = Field(default=None, min_length=1, max_length=_DISPLAY_NAME_MAX)
    email: str | None = Field(default=None, max_length=320)
    disabled: bool | None = None


class RoleAssignmentOut(BaseModel):
    role_id: uuid.UUID
    role: str
    branch_id: uuid.UUID | None


class UserOut(BaseModel):
    id: uuid.UUID
    username: str
    display_name: str
    email: str | None
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None
    roles: list[RoleAssignmentOut]

    @classmethod
    def of(cls, user: User) -> UserOut:
        roles = sorted(
            (
                RoleAssignmentOut(role_id=a.role_id, role=a.role.name, branch_id=a.branch_id)
                for a in user.role_assignments
            ),
            key=lambda r: (r.role, str(r.branch_id or "")),
        )
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            email=user.email,
            disabled=user.disabled,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
            roles=roles,
        )


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


def _user(session: Session, principal: Principal, user_id: uuid.UUID) -> User:
    user = session.scalar(
        select(User).where(User.id == user_id, User.tenant_id == principal.tenant_id)
    )
    if user is None:
        raise not_found("user", user_id)
    return user


def _email(text: str | None) -> str | None:
    return None if text is None or not text.strip() else EmailAddress.parse(text).value


def _check_may_grant(
    session: Session,
    request: Request,
    principal: Principal,
    role: Role,
    branch_id: uuid.UUID | None,
) -> None:
    missing = sorted(
        p.code for p in role.permissions if not principal.grants.allows(p.code, branch_id)
    )
    if missing:
        raise refuse(
            session,
            request,
            principal,
            "users.manage",
            f"You cannot give role {role.name!r}: you do not hold {', '.join(missing)} there.",
        )


def _grantable(session: Session, request: Request, principal: Principal, grant: RoleGrant) -> Role:
    """The role of ``grant``, if it exists in the tenant and the caller may give it there."""
    try:
        role = rbac.get_role(session, principal.tenant_id, grant.role_id)
    except NotFound:
        raise InvalidValue("role_id", f"no role {grant.role_id}") from None
    _check_may_grant(session, request, principal, role, grant.branch_id)
    return role


def _assign(
    session: Session,
    request: Request,
    principal: Principal,
    user: User,
    role: Role,
    branch_id: uuid.UUID | None,
) -> None:
    with service_errors():
        try:
            rbac.assign_role(
                session,
                principal.tenant_id,
                user.id,
                role.id,
                branch_id,
                actor=principal.actor(request),
            )
        except NotFound:  # the user and the role were just found: it is the branch
            raise InvalidValue("branch_id", f"no branch {branch_id}") from None


def _is_last_admin(session: Session, user: User) -> bool:
    admin_role = select(Role.id).where(
        Role.tenant_id == user.tenant_id, Role.is_builtin.is_(True), Role.name == TENANT_ADMIN
    )
    admins = (
        select(UserRole.user_id)
        .join(User, User.id == UserRole.user_id)
        .where(
            UserRole.tenant_id == user.tenant_id,
            UserRole.role_id.in_(admin_role),
            UserRole.branch_id.is_(None),
            User.disabled.is_(False),
        )
    )
    holders = set(session.scalars(admins))
    return holders == {user.id}


@router.get("", response_model=UserPage)
def list_users(
    principal: Viewer,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=150)] = None,
) -> UserPage:
    """Users by username; pass ``next_cursor`` back as ``cursor`` for the next page."""
    query = (
        select(User)
        .where(User.tenant_id == principal.tenant_id)
        .options(selectinload(User.role_assignments))
    )
    if cursor:
        query = query.where(User.username_normalized > cursor)
    rows = list(session.scalars(query.order_by(User.username_normalized).limit(limit + 1)))
    next_cursor = rows[limit - 1].username_normalized if len(rows) > limit else None
    return UserPage(items=[UserOut.of(u) for u in rows[:limit]], next_cursor=next_cursor)


@router.post("", response_model=UserOut, status_code=201)
def create(body: UserCreate, request: Request, principal: Manager, session: SessionDep) -> UserOut:
    """A new user with an initial password and roles; a taken username is a 409."""
    tenant = tenants.get_tenant(session, principal.tenant_id)
    # Checked before anything is written: a refusal is committed with its audit row.
    roles = [(_grantable(session, request, principal, g), g.branch_id) for g in body.roles]
    try:
        with service_errors():
            user = tenants.create_user(
                session,
                tenant,
                body.username,
                body.password,
                display_name=body.display_name,
                email=_email(body.email),
                actor=principal.actor(request),
            )
    except PasswordPolicyError as exc:
        raise InvalidValue("password", str(exc)) from None
    for role, branch_id in roles:
        _assign(session, request, principal, user, role, branch_id)
    session.expire(user, ["role_assignments"])
    return UserOut.of(user)


@router.get("/{user_id}", response_model=UserOut)
def read(user_id: uuid.UUID, principal: Viewer, session: SessionDep) -> UserOut:
    return UserOut.of(_user(session, principal, user_id))


@router.patch("/{user_id}", response_model=UserOut)
def update(
    user_id: uuid.UUID, body: UserPatch, request: Request, principal: Manager, session: SessionDep
) -> UserOut:
    """Change the display name or e-mail (``null`` clears it), or disable/enable the user."""
    user = _user(session, principal, user_id)
    changes: dict[str, object] = {}
    if body.display_name is not None:
        changes["display_name"] = " ".join(body.display_name.split())[:_DISPLAY_NAME_MAX]
        if not changes["display_name"]:
            raise InvalidValue("display_name", "must not be blank")
    if "email" in body.model_fields_set:
        changes["email"] = _email(body.email)
    if body.disabled is not None:
        changes["disabled"] = body.disabled
    changed = {k: v for k, v in changes.items() if getattr(user, k) != v}
    if changed.get("disabled") and _is_last_admin(session, user):
        raise Problem(
            409, f"{user.username!r} is the tenant's last administrator.", slug="conflict"
        )
    for key, value in changed.items():
        setattr(user, key, value)
    if changed.get("disabled"):
        end_sessions(session, user)  # tokens already issued stop working at once
    if changed:
        session.flush()
        action = "user.updated"
        if "disabled" in changed:
            action = "user.disabled" if changed["disabled"] else "user.enabled"
        audit.record_as(
            session,
            principal.actor(request),
            tenant_id=principal.tenant_id,
            action=action,
            object_type="user",
            object_id=str(user.id),
            details=changed,
        )
    return UserOut.of(user)


@router.post("/{user_id}/roles", response_model=UserOut, status_code=201)
def assign_role(
    user_id: uuid.UUID, body: RoleGrant, request: Request, principal: Manager, session: SessionDep
) -> UserOut:
    """Give a role tenant-wide (no ``branch_id``) or at a branch; a repeat is a 409."""
    user = _user(session, principal, user_id)
    role = _grantable(session, request, principal, body)
    _assign(session, request, principal, user, role, body.branch_id)
    session.expire(user, ["role_assignments"])
    return UserOut.of(user)


@router.delete("/{user_id}/roles", status_code=204, response_class=Response)
def unassign_role(
    user_id: uuid.UUID,
    role_id: uuid.UUID,
    request: Request,
    principal: Manager,
    session: SessionDep,
    branch_id: uuid.UUID | None = None,
) -> Response:
    """Take back a role given in that scope; the last administrator keeps theirs (409)."""
    user = _user(session, principal, user_id)
    with service_errors():
        rbac.unassign_role(
            session,
            principal.tenant_id,
            user.id,
            role_id,
            branch_id,
            actor=principal.actor(request),
        )
    return Response(status_code=204)
