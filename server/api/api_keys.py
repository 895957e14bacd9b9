"""``/api-keys`` routes: create, list and revoke the tenant's API keys.

Every route needs ``api_keys.manage`` tenant-wide. A new key acts for its
creator with at most the scopes given, which must be among the creator's
current permissions; its plaintext is in the creation answer only (the
service keeps a hash and a short prefix). Keys always expire.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from core.errors import InvalidValue
from core.permissions import unknown_permissions
from server.api.admin_common import not_found
from server.api.deps import Principal, SessionDep, require
from server.api.problems import Problem
from server.models import ApiKey, utc_now
from server.security.api_keys import generate_api_key
from server.services import audit

router = APIRouter(prefix="/api-keys", tags=["api-keys"])

MANAGE: Final = "api_keys.manage"
Manager = Annotated[Principal, Depends(require(MANAGE))]


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1, max_length=100)
    expires_in_days: int = Field(ge=1, le=365)


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def fields_of(cls, key: ApiKey) -> dict[str, object]:
        return {
            "id": key.id,
            "user_id": key.user_id,
            "name": key.name,
            "prefix": key.prefix,
            "scopes": sorted(key.scopes or ()),
            "created_at": key.created_at,
            "expires_at": key.expires_at,
            "revoked_at": key.revoked_at,
            "last_used_at": key.last_used_at,
        }

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls.model_validate(cls.fields_of(key))


class NewApiKeyOut(ApiKeyOut):
    key: str = Field(description="The key itself; shown this once and never again.")


@router.get("", response_model=list[ApiKeyOut])
def list_keys(principal: Manager, session: SessionDep) -> list[ApiKeyOut]:
    """The tenant's keys, newest first, without their secrets."""
    query = (
        select(ApiKey)
        .where(ApiKey.tenant_id == principal.tenant_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return [ApiKeyOut.of(k) for k in session.scalars(query)]


@router.post("", response_model=NewApiKeyOut, status_code=201)
def create(
    body: ApiKeyCreate, request: Request, principal: Manager, session: SessionDep
) -> NewApiKeyOut:
    """A new key for the caller, scoped to at most the caller's current permissions."""
    if principal.user_id is None:  # pragma: no cover - every principal has an owner
        raise Problem(403, "Only a user can own an API key.", slug="forbidden")
    scopes = set(body.scopes)
    unknown = unknown_permissions(scopes)
    if unknown:
        raise InvalidValue("scopes", f"unknown permission codes: {', '.join(sorted(unknown))}")
    beyond = scopes - principal.grants.permissions()
    if beyond:
        raise InvalidValue("scopes", f"you do not hold: {', '.join(sorted(beyond))}")
    name = " ".join(body.name.split())
    if not name:
        raise InvalidValue("name", "must not be blank")
    new = generate_api_key()
    key = ApiKey(
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        scopes=sorted(scopes),
        created_at=utc_now(),
        expires_at=utc_now() + timedelta(days=body.expires_in_days),
    )
    session.add(key)
    session.flush()
    audit.record_as(
        session,
        principal.actor(request),
        tenant_id=principal.tenant_id,
        action="api_key.created",
        object_type="api_key",
        object_id=str(key.id),
        details={"name": name, "prefix": new.prefix, "scopes": sorted(scopes)},
    )
    return NewApiKeyOut.model_validate({**ApiKeyOut.fields_of(key), "key": new.plaintext})


@router.delete("/{key_id}", status_code=204, response_class=Response)
def revoke(
    key_id: uuid.UUID, request: Request, principal: Manager, session: SessionDep
) -> Response:
    """Revoke a key at once; revoking a revoked key changes nothing."""
    key = session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == principal.tenant_id)
    )
    if key is None:
        raise not_found("API key", key_id)
    if key.revoked_at is None:
        key.revoked_at = utc_now()
        audit.record_as(
            session,
            principal.actor(request),
            tenant_id=principal.tenant_id,
            action="api_key.revoked",
            object_type="api_key",
            object_id=str(key.id),
            details={"name": key.name, "prefix": key.prefix},
        )
    return Response(status_code=204)
