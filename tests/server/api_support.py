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
    # The TestClient reads a response to its end, so in process a live sync stream
    # must end by itself: it lasts half a second unless the test asks otherwise.
    settings = Settings(database_url=db_url, **{"sync_stream_max_s": 0.5, **overrides})
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


# --- every API route: seeding what they address, filling their parameters ---------

# The kind of resource a path parameter names, by parameter name.
PARAM_KINDS: dict[str, str] = {
    "branch_id": "branch",
    "service_id": "service",
    "counter_id": "counter",
    "ticket_id": "ticket",
    "user_id": "user",
    "role_id": "role",
    "api_key_id": "api_key",
    "key_id": "api_key",
    "device_id": "device",
    "pause_reason_id": "pause_reason",
    "reason_id": "pause_reason",
    "webhook_id": "webhook",
    "template_id": "template",
    "integration_id": "integration",
    "alert_id": "alert",
    "backup_id": "backup",
    "audit_id": "audit",
    "entry_id": "audit",
}
# The kind a bare ``{id}`` names, by the path segment before it.
SEGMENT_KINDS: dict[str, str] = {
    "branches": "branch",
    "services": "service",
    "counters": "counter",
    "tickets": "ticket",
    "users": "user",
    "roles": "role",
    "api-keys": "api_key",
    "devices": "device",
    "pause-reasons": "pause_reason",
    "webhooks": "webhook",
    "notification-templates": "template",
    "integrations": "integration",
    "alerts": "alert",
    "backups": "backup",
    "audit": "audit",
}
BRANCH_OWNED: frozenset[str] = frozenset({"branch", "service", "counter", "ticket", "device"})
_WALKED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def seed_branch_resources(
    session: Session, tenant_id: uuid.UUID, branch_id: uuid.UUID, tag: str
) -> dict[str, uuid.UUID]:
    """A service, a counter calling from it, a waiting ticket, a kiosk and an alert at a branch."""
    from server.models import Alert, Device
    from server.services import queue

    service = tenants.create_service(session, tenant_id, branch_id, "W", f"Walk-in {tag}")
    counter = tenants.create_counter(session, tenant_id, branch_id, 1, f"Desk {tag}", [service.id])
    device = Device(tenant_id=tenant_id, branch_id=branch_id, name=f"Kiosk {tag}", kind="kiosk")
    alert = Alert(tenant_id=tenant_id, branch_id=branch_id, kind="sla", message=f"Slow {tag}")
    session.add_all([device, alert])
    session.flush()
    ticket = queue.issue_ticket(
        session, tenant_id=tenant_id, branch_id=branch_id, service_id=service.id
    )
    return {
        "branch": branch_id,
        "service": service.id,
        "counter": counter.id,
        "ticket": uuid.UUID(str(ticket.id)),
        "device": device.id,
        "alert": alert.id,
    }


def seed_tenant_resources(
    session: Session, tenant_id: uuid.UUID, branch_id: uuid.UUID, tag: str
) -> dict[str, uuid.UUID | int]:
    """Tenant-level rows for routes to address: a custom role, a user with an API key, audit rows.

    The user is nobody's login, so a route that edits or disables it leaves the
    callers of a test alone; likewise the role is a custom one, not a built-in.
    """
    from sqlalchemy import func, select

    from server.models import (
        ApiKey,
        AuditLog,
        Backup,
        Integration,
        NotificationTemplate,
        Webhook,
    )
    from server.security.api_keys import generate_api_key

    role = rbac.create_role(session, tenant_id, f"Greeter {tag}", ["queue.view"])
    user_id = _add_user(session, tenant_id, f"target-{tag}", STAFF, branch_id)
    new_key = generate_api_key()
    key = ApiKey(
        tenant_id=tenant_id,
        user_id=user_id,
        name=f"kiosk feed {tag}",
        prefix=new_key.prefix,
        key_hash=new_key.key_hash,
        scopes=["queue.view"],
    )
    reason = tenants.create_pause_reason(session, tenant_id, f"Lunch {tag}")
    webhook = Webhook(
        tenant_id=tenant_id, url=f"https://{tag}.example.com/hook", secret="whsec_" + "A" * 32
    )
    template = NotificationTemplate(
        tenant_id=tenant_id, channel="sms", event="ticket.called", body=f"{tag}: {{number}}"
    )
    integration = Integration(tenant_id=tenant_id, kind="smtp", name=f"Mail {tag}")
    backup = Backup(tenant_id=tenant_id, name=f"{tag}.dump", location=f"/backups/{tag}.dump")
    session.add_all([key, webhook, template, integration, backup])
    session.flush()
    audit_id = session.scalar(select(func.max(AuditLog.id)).where(AuditLog.tenant_id == tenant_id))
    assert audit_id is not None
    return {
        "role": role.id,
        "user": user_id,
        "api_key": key.id,
        "pause_reason": reason.id,
        "webhook": webhook.id,
        "template": template.id,
        "integration": integration.id,
        "backup": backup.id,
        "audit": audit_id,
    }


def add_user(
    session: Session, tenant_id: uuid.UUID, username: str, role: str, branch_id: uuid.UUID | None
) -> uuid.UUID:
    """A user with the shared test password and one role (tenant-wide when no branch)."""
    return _add_user(session, tenant_id, username, role, branch_id)


def bearer(client: TestClient, tenant: str, username: str) -> dict[str, str]:
    """Authorization headers of a fresh sign-in (password :data:`PASSWORD`)."""
    response = client.post(
        "/api/v1/auth/login", json={"tenant": tenant, "username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def tenant_snapshot(session: Session, tenant_id: uuid.UUID) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table that carries ``tenant_id``, for before/after comparisons."""
    from sqlalchemy import select

    from server.models import Base

    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    for table in Base.metadata.sorted_tables:
        if "tenant_id" in table.c:
            rows = session.execute(select(table).where(table.c.tenant_id == tenant_id)).all()
            snapshot[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return snapshot


def tenant_uuids(session: Session, tenant_id: uuid.UUID) -> set[str]:
    """Every uuid held in a row that belongs to the tenant (its ids and their references)."""
    found = {str(tenant_id)}
    for rows in tenant_snapshot(session, tenant_id).values():
        found.update(str(v) for row in rows for v in row if isinstance(v, uuid.UUID))
    return found


def api_routes(app: FastAPI) -> list[tuple[str, Any]]:
    """(method, route) of every route under /api/v1, probes excluded, in path order.

    Routers are included lazily, so ``app.routes`` holds them unexpanded;
    :func:`fastapi.routing.iter_route_contexts` gives each route with its full
    path and the dependencies it runs with.
    """
    from fastapi.routing import APIRoute, iter_route_contexts

    found = []
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        path = route.path or ""
        if not path.startswith("/api/v1/") or path.startswith("/api/v1/_probe"):
            continue
        found += [(m, route) for m in _WALKED_METHODS if m in (route.methods or ())]
    return sorted(found, key=lambda pair: (pair[1].path, pair[0]))


def required_permissions(route: Any) -> list[tuple[str, str | None]]:
    """(permission, branch_param) of every ``require(...)`` in the route's dependency tree.

    ``require`` keeps both in its closure. A dependency that wraps one (keeps the
    function ``require`` made in its own closure) is followed into it; a policy
    decided inside a route or by calling ``require`` ad hoc does not show up here.
    """
    found: list[tuple[str, str | None]] = []

    def closure_of(call: Any) -> dict[str, Any]:
        names = getattr(getattr(call, "__code__", None), "co_freevars", ())
        cells = getattr(call, "__closure__", None) or ()
        return dict(zip(names, (c.cell_contents for c in cells), strict=True))

    def inspect_call(call: Any, depth: int = 0) -> None:
        cells = closure_of(call)
        if isinstance(cells.get("permission"), str) and "branch_param" in cells:
            found.append((cells["permission"], cells["branch_param"]))
            return
        for value in cells.values():
            if callable(value) and depth < 3:
                inspect_call(value, depth + 1)

    def walk(dependant: Any) -> None:
        for sub in dependant.dependencies:
            inspect_call(sub.call)
            walk(sub)

    walk(route.dependant)
    return found


def path_kinds(path: str) -> dict[str, str | None]:
    """Each path parameter and the kind of resource it names (None: unknown)."""
    import re

    kinds: dict[str, str | None] = {}
    segments = path.strip("/").split("/")
    for index, segment in enumerate(segments):
        match = re.fullmatch(r"\{(\w+)(?::\w+)?\}", segment)
        if match is None:
            continue
        name = match.group(1)
        if name == "id":
            before = segments[index - 1] if index else ""
            kinds[name] = SEGMENT_KINDS.get(before)
        else:
            kinds[name] = PARAM_KINDS.get(name)
    return kinds


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _uuid_kind(name: str) -> str | None:
    if name in PARAM_KINDS:
        return PARAM_KINDS[name]
    if name.endswith("_ids"):
        return PARAM_KINDS.get(name[:-1])
    if name == "work_profile":
        return "service"
    return None


def example_value(
    schema: dict[str, Any],
    spec: dict[str, Any],
    name: str,
    ids: dict[str, Any],
    *,
    all_ids: bool = False,
) -> Any:
    """A plausible minimal value for ``schema``: required fields only, ids from ``ids`` by name.

    With ``all_ids`` optional fields that name a resource are filled in too.
    """
    schema = _resolve(schema, spec)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(s, spec) for s in schema[key]]
            chosen = [s for s in options if s.get("type") != "null"] or options
            return example_value(chosen[0], spec, name, ids, all_ids=all_ids)
    if "allOf" in schema:
        return example_value(schema["allOf"][0], spec, name, ids, all_ids=all_ids)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return {
            field: example_value(sub, spec, field, ids, all_ids=all_ids)
            for field, sub in properties.items()
            if field in required or (all_ids and _uuid_kind(field) in ids)
        }
    if kind == "array":
        item_name = name[:-1] if name.endswith("s") else name
        resource = _uuid_kind(name)
        if resource is not None and resource in ids:
            return [str(ids[resource])]
        if name in ("permissions", "scopes"):
            return ["queue.view"]
        count = max(schema.get("minItems", 0), 0)
        item = schema.get("items", {})
        return [example_value(item, spec, item_name, ids, all_ids=all_ids) for _ in range(count)]
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return _example_number(schema, name)
    return _example_string(schema, name, ids)


def _example_number(schema: dict[str, Any], name: str) -> int:
    low = int(schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1))
    high = int(schema.get("maximum", schema.get("exclusiveMaximum", 10_000) - 1))
    if name == "number":  # counter numbers are unique per branch
        return min(max(low, 100 + uuid.uuid4().int % 9000), high)
    if name.endswith("_s"):
        return min(max(low, 600), high)
    return min(max(low, 1), high)


_NAMED_STRINGS = {
    "time_zone": "Europe/Paris",
    "url": "https://hooks.example.com/queuedesk",
    "locale": "en",
    "password": "a long enough new passphrase 42",
    "new_password": "a long enough new passphrase 42",
    "old_password": PASSWORD,
    "event": "ticket.called",
}


def _example_string(schema: dict[str, Any], name: str, ids: dict[str, Any]) -> str:
    resource = _uuid_kind(name)
    if schema.get("format") == "uuid" or resource is not None:
        if resource is not None and resource in ids:
            return str(ids[resource])
        return str(uuid.uuid4())
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2030-01-01T09:00:00Z"
    if fmt == "date":
        return "2030-01-01"
    if fmt == "email":
        return "someone@example.com"
    if fmt in ("uri", "url"):
        return _NAMED_STRINGS["url"]
    if name in _NAMED_STRINGS:
        return _NAMED_STRINGS[name]
    unique = uuid.uuid4().hex
    if name == "code":
        letters = "".join(chr(ord("A") + int(c, 16) % 26) for c in unique)
        return letters[: min(schema.get("maxLength", 3), 3)]
    low, high = schema.get("minLength", 1), schema.get("maxLength", 40)
    text = f"{name or 'x'}-{unique}"
    return (text * (low // len(text) + 1))[: max(low, min(high, len(text)))]


def example_body(
    spec: dict[str, Any], method: str, path: str, ids: dict[str, Any], *, all_ids: bool = False
) -> tuple[bool, Any]:
    """(has a JSON body, a plausible one) for the operation in the OpenAPI document ``spec``."""
    operation = spec["paths"].get(path, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return False, None
    schema = content["application/json"].get("schema", {})
    return True, example_value(schema, spec, "", ids, all_ids=all_ids)


def example_query(
    spec: dict[str, Any], method: str, path: str, ids: dict[str, Any], *, optional: bool
) -> dict[str, Any]:
    """Query parameters: the required ones, plus (``optional``) every one that names an id."""
    operation = spec["paths"].get(path, {}).get(method.lower(), {})
    query: dict[str, Any] = {}
    for parameter in operation.get("parameters", []):
        if parameter.get("in") != "query":
            continue
        name = parameter["name"]
        names_id = _uuid_kind(name) in ids
        if parameter.get("required") or (optional and names_id):
            query[name] = example_value(parameter.get("schema", {}), spec, name, ids)
    return query
