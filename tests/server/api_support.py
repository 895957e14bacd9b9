"""Helpers for tests of the HTTP API: a running app on a seeded tenant, and token forging.

:func:`running_app` builds the real application on a test database, enters its
lifespan with a TestClient and seeds one tenant: a branch, an administrator
(tenant-wide), a member of staff (at the branch) and a disabled user, all with
the password :data:`PASSWORD` (hashed once per test session: argon2 is slow on
purpose). A few probe routes that use the real dependencies are added under
``/api/v1/_probe`` so the authentication and permission checks can be tested
on their own.
"""

from __future__ import annotations

import functools
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from core.permissions import STAFF, TENANT_ADMIN
from server.api.deps import Principal, PrincipalDep, require
from server.app import create_app
from server.config import Settings
from server.db import session_scope
from server.models import User
from server.security.passwords import hash_password
from server.security.signing_keys import KeyRing
from server.services import rbac, tenants
from server.services.keys import load_keyring

with warnings.catch_warnings():
    # Starlette warns at import when it finds httpx rather than httpx2.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

__all__ = ["PASSWORD", "TENANT", "TestClient", "World", "forge_token", "running_app", "statements"]

PASSWORD = "correct horse battery staple"
TENANT = "acme"
CLIENT_ADDRESS = ("10.0.0.1", 40000)


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def _probe_router() -> APIRouter:
    router = APIRouter(prefix="/_probe")

    @router.get("/whoami")
    def whoami(principal: PrincipalDep) -> dict[str, Any]:
        return {
            "tenant_id": str(principal.tenant_id),
            "user_id": str(principal.user_id),
            "actor_type": principal.actor_type,
            "permissions": sorted(principal.grants.permissions()),
        }

    @router.get("/users")
    def users(principal: Principal = Depends(require("users.view"))) -> dict[str, str]:  # noqa: B008
        return {"ok": principal.actor_id}

    @router.get("/branches/{branch_id}/queue")
    def queue(
        branch_id: uuid.UUID,
        principal: Principal = Depends(require("queue.view", branch_param="branch_id")),  # noqa: B008
    ) -> dict[str, str]:
        return {"branch_id": str(branch_id)}

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError("internal detail that must not leak")

    return router


@dataclass
class World:
    """The running app, its client and the ids of what was seeded."""

    app: FastAPI
    client: TestClient
    factory: sessionmaker[Session]
    settings: Settings
    tenant_id: uuid.UUID
    branch_id: uuid.UUID
    other_branch_id: uuid.UUID
    admin_id: uuid.UUID
    staff_id: uuid.UUID
    disabled_id: uuid.UUID

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.factory) as session:
            yield session

    def login(
        self, username: str = "admin", password: str = PASSWORD, client: TestClient | None = None
    ) -> dict[str, Any]:
        response = (client or self.client).post(
            "/api/v1/auth/login",
            json={"tenant": TENANT, "username": username, "password": password},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def whoami(self, token: str) -> int:
        """The status of an authenticated probe with ``token`` as the bearer."""
        headers = {"Authorization": f"Bearer {token}"}
        return self.client.get("/api/v1/_probe/whoami", headers=headers).status_code

    def keyring(self) -> KeyRing:
        with self.session() as session:
            ring = load_keyring(session)
        assert ring is not None
        return ring


def _add_user(
    session: Session, tenant_id: uuid.UUID, username: str, role: str, branch_id: uuid.UUID | None
) -> uuid.UUID:
    # Straight to the model with a shared hash: one argon2 hash for every user.
    user = User(
        tenant_id=tenant_id,
        username=username,
        display_name=username.title(),
        password_hash=password_hash(),
    )
    session.add(user)
    session.flush()
    rbac.assign_role(
        session, tenant_id, user.id, rbac.role_by_name(session, tenant_id, role).id, branch_id
    )
    return user.id


def seed(factory: sessionmaker[Session]) -> dict[str, uuid.UUID]:
    with session_scope(factory) as session:
        tenant = tenants.create_tenant(session, TENANT, "Acme Bank")
        branch = tenants.create_branch(session, tenant.id, "Main", "MAIN", "Europe/Paris")
        other = tenants.create_branch(session, tenant.id, "North", "NORTH", "Europe/Paris")
        ids = {
            "tenant_id": tenant.id,
            "branch_id": branch.id,
            "other_branch_id": other.id,
            "admin_id": _add_user(session, tenant.id, "admin", TENANT_ADMIN, None),
            "staff_id": _add_user(session, tenant.id, "staff1", STAFF, branch.id),
            "disabled_id": _add_user(session, tenant.id, "gone", STAFF, branch.id),
        }
        disabled = session.get(User, ids["disabled_id"])
        assert disabled is not None
        disabled.disabled = True
    return ids


@contextmanager
def running_app(db_url: str, **overrides: Any) -> Iterator[World]:
    """The app on ``db_url`` with its lifespan entered and the tenant seeded."""
    settings = Settings(database_url=db_url, **overrides)
    app = create_app(settings)
    app.include_router(_probe_router(), prefix="/api/v1")
    rbac.grant_cache.clear()  # the cache is process-wide; ids differ per test anyway
    with TestClient(app, client=CLIENT_ADDRESS, raise_server_exceptions=False) as client:
        factory: sessionmaker[Session] = app.state.session_factory
        app.state.keys.ring()  # the first signing key, as the first login would make it
        yield World(app=app, client=client, factory=factory, settings=settings, **seed(factory))


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` runs inside the block."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def forge_token(
    world: World,
    *,
    user_id: uuid.UUID | None = None,
    headers: dict[str, Any] | None = None,
    ring: KeyRing | None = None,
    **claims: Any,
) -> str:
    """An access token signed with the real active key, with claims or headers changed.

    Without changes it is a valid token of the administrator, so each test that
    changes one thing shows that this one thing is refused.
    """
    ring = ring or world.keyring()
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": world.settings.jwt_issuer,
        "aud": "queuedesk",
        "sub": str(user_id or world.admin_id),
        "tid": str(world.tenant_id),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "roles": [TENANT_ADMIN],
        "ver": 0,
    }
    body.update(claims)
    header = {"kid": ring.active.kid, "typ": "at+jwt", **(headers or {})}
    return jwt.encode(body, ring.active.private_key, algorithm="EdDSA", headers=header)
