"""``/auth`` routes: login, refresh, logout and changing one's own password."""

from __future__ import annotations

import uuid
from typing import Final

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import KeysDep, PrincipalDep, SessionDep, SettingsDep, client_ip, user_agent
from server.api.problems import Problem
from server.models import Branch, User
from server.security.passwords import PasswordPolicyError
from server.services import audit
from server.services import auth as auth_service
from server.services.auth import AuthRefused, IssuedTokens

router = APIRouter(prefix="/auth", tags=["auth"])

_BAD_LOGIN: Final = "The tenant, username or password is not correct."
_BAD_REFRESH: Final = "The refresh token is invalid, expired or revoked; sign in again."
_THROTTLED: Final = "Too many failed sign-ins; try again later."


class LoginRequest(BaseModel):
    tenant: str = Field(min_length=1, max_length=63)
    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=4096)
    device_id: uuid.UUID | None = None


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutRequest(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=512)


class PasswordChangeRequest(BaseModel):
    old_password: str = Field(min_length=1, max_length=4096)
    new_password: str = Field(min_length=1, max_length=4096)


class TenantOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str


class BranchOut(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    permissions: list[str]


class UserOut(BaseModel):
    id: uuid.UUID
    username: str
    display_name: str
    tenant: TenantOut
    permissions: list[str]
    branches: list[BranchOut]


class TokenPair(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 (the scheme name, not a secret)
    expires_in: int
    refresh_token: str
    user: UserOut


def _token_pair(session: Session, issued: IssuedTokens) -> TokenPair:
    grants = issued.grants
    query = select(Branch).where(Branch.tenant_id == issued.tenant.id).order_by(Branch.code)
    if not grants.tenant_wide:
        query = query.where(Branch.id.in_(list(grants.by_branch)))
    branches = [
        BranchOut(
            id=branch.id,
            code=branch.code,
            name=branch.name,
            permissions=sorted(grants.tenant_wide | grants.by_branch.get(branch.id, frozenset())),
        )
        for branch in session.scalars(query)
    ]
    user = issued.user
    return TokenPair(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        user=UserOut(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            tenant=TenantOut(id=issued.tenant.id, slug=issued.tenant.slug, name=issued.tenant.name),
            permissions=sorted(grants.permissions()),
            branches=branches,
        ),
    )


def _anonymous(request: Request) -> audit.Actor:
    return audit.Actor("system", None, client_ip(request), user_agent(request))


@router.post("/login", response_model=TokenPair)
def login(
    body: LoginRequest, request: Request, session: SessionDep, keys: KeysDep, settings: SettingsDep
) -> TokenPair:
    """Sign in with a password; unknown tenant or user and a wrong password look the same."""
    try:
        issued = auth_service.login(
            session,
            keys.ring(),
            settings,
            tenant=body.tenant,
            username=body.username,
            password=body.password,
            device_id=body.device_id,
            actor=_anonymous(request),
        )
    except AuthRefused as refused:
        session.commit()  # the throttle count and the audit row must survive the refusal
        if refused.kind == "throttled":
            retry = str(refused.retry_after or 1)
            raise Problem(
                429, _THROTTLED, slug="throttled", headers={"Retry-After": retry}
            ) from None
        raise Problem(401, _BAD_LOGIN, slug="invalid-credentials") from None
    return _token_pair(session, issued)


@router.post("/refresh", response_model=TokenPair)
def refresh(
    body: RefreshRequest,
    request: Request,
    session: SessionDep,
    keys: KeysDep,
    settings: SettingsDep,
) -> TokenPair:
    """Exchange a refresh token for a new pair; a reused token ends its whole family."""
    try:
        issued = auth_service.refresh(
            session,
            keys.ring(),
            settings,
            refresh_token=body.refresh_token,
            actor=_anonymous(request),
        )
    except AuthRefused:
        session.commit()  # a family revoked for reuse stays revoked
        raise Problem(401, _BAD_REFRESH, slug="invalid-refresh-token") from None
    return _token_pair(session, issued)


def _require_user(principal: PrincipalDep) -> uuid.UUID:
    if principal.user_id is None or principal.actor_type != "user":
        raise Problem(403, "Only a signed-in user can do this, not an API key.", slug="forbidden")
    return principal.user_id


@router.post("/logout", status_code=204, response_class=Response)
def logout(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    body: LogoutRequest | None = None,
) -> Response:
    """End this access token and the refresh family of ``refresh_token`` (else all of them)."""
    user_id = _require_user(principal)
    auth_service.logout(
        session,
        tenant_id=principal.tenant_id,
        user_id=user_id,
        jti=principal.jti,
        token_expires_at=principal.expires_at,
        refresh_token=body.refresh_token if body else None,
        actor=principal.actor(request),
    )
    return Response(status_code=204)


@router.post("/password", status_code=204, response_class=Response)
def change_password(
    body: PasswordChangeRequest, request: Request, principal: PrincipalDep, session: SessionDep
) -> Response:
    """Change one's own password; every session of the user ends, this one included."""
    user = session.get(User, _require_user(principal))
    if user is None:  # pragma: no cover - the principal was just loaded
        raise Problem(401, "Not authenticated.")
    try:
        auth_service.change_password(
            session,
            user,
            old_password=body.old_password,
            new_password=body.new_password,
            actor=principal.actor(request),
        )
    except AuthRefused:
        session.commit()
        raise Problem(403, "The current password is not correct.", slug="wrong-password") from None
    except PasswordPolicyError as exc:
        raise Problem(422, str(exc), slug="weak-password") from None
    return Response(status_code=204)
