"""Every default role against every permission-guarded API route: 403 exactly when it lacks it.

Routes come from ``app.routes``, so new ones join the matrix by themselves.
What a route requires is read from the ``require(...)`` closures in its
dependency tree; a route that decides inside its handler (or through a custom
dependency) must be listed in :data:`POLICIES`, and a route found in neither
fails the test so its permission is stated before it ships.

The tenant_admin holds every permission tenant-wide; branch_manager, staff and
device are assigned at branch X. They also must not reach branch Y's resources.

SQLite only: what is checked here is decided in Python from the grants, the
same on every backend; tenant scoping in SQL is covered on both backends by
test_isolation.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import pytest

from core.permissions import ALL_PERMISSIONS, BRANCH_MANAGER, DEFAULT_ROLES, DEVICE, STAFF
from core.permissions import TENANT_ADMIN as ADMIN
from tests.server.api_support import (
    BRANCH_OWNED,
    TENANT,
    World,
    add_user,
    api_routes,
    bearer,
    example_body,
    example_query,
    path_kinds,
    required_permissions,
    running_app,
    seed_branch_resources,
    seed_tenant_resources,
)

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


@dataclass(frozen=True)
class Access:
    """Allowed to holders of any of ``any_of``, at the addressed branch or tenant-wide."""

    any_of: tuple[str, ...]
    at_branch: bool

    def allows(self, role: str) -> bool:
        if role == ADMIN:
            return True
        return self.at_branch and bool(set(self.any_of) & DEFAULT_ROLES[role].permissions)


# Routes whose check is not a require(...) in their dependencies (decided inside
# the handler, or by a dependency that calls require itself).
POLICIES: Final[dict[tuple[str, str], Access]] = {
    # queue.view somewhere, else branches.manage; the list is cut to visible branches
    ("GET", "/api/v1/branches"): Access(("queue.view", "branches.manage"), True),
    ("GET", "/api/v1/branches/{branch_id}"): Access(("queue.view", "branches.manage"), True),
    # checked at the branch of the ticket or counter, after finding it in the tenant
    ("POST", "/api/v1/branches/{branch_id}/tickets"): Access(("tickets.issue",), True),
    ("GET", "/api/v1/tickets/{ticket_id}"): Access(("queue.view",), True),
    ("POST", "/api/v1/tickets/{ticket_id}/call"): Access(("tickets.call",), True),
    ("POST", "/api/v1/tickets/{ticket_id}/recall"): Access(("tickets.call",), True),
    ("POST", "/api/v1/tickets/{ticket_id}/start"): Access(("tickets.serve",), True),
    ("POST", "/api/v1/tickets/{ticket_id}/complete"): Access(("tickets.serve",), True),
    ("POST", "/api/v1/tickets/{ticket_id}/no-show"): Access(("tickets.serve",), True),
    ("POST", "/api/v1/tickets/{ticket_id}/transfer"): Access(("tickets.transfer",), True),
    ("POST", "/api/v1/tickets/{ticket_id}/park"): Access(("tickets.park",), True),
    ("POST", "/api/v1/tickets/{ticket_id}/return"): Access(("tickets.park",), True),
    ("POST", "/api/v1/tickets/{ticket_id}/cancel"): Access(("tickets.cancel",), True),
    ("POST", "/api/v1/counters/{counter_id}/call-next"): Access(("tickets.call",), True),
    ("POST", "/api/v1/counters/{counter_id}/open"): Access(("counters.operate",), True),
    ("POST", "/api/v1/counters/{counter_id}/close"): Access(("counters.operate",), True),
    ("POST", "/api/v1/counters/{counter_id}/pause"): Access(("counters.operate",), True),
    ("POST", "/api/v1/counters/{counter_id}/resume"): Access(("counters.operate",), True),
    # checked at the branch named in the body or query, after finding it in the tenant
    ("POST", "/api/v1/sync/push"): Access(("sync.device",), True),
    ("GET", "/api/v1/sync/pull"): Access(("sync.device",), True),
    ("GET", "/api/v1/sync/stream"): Access(("sync.device",), True),
    ("POST", "/api/v1/sync/leases"): Access(("sync.device",), True),
}
# Routes any signed-in caller (or anyone) may use, each with why.
UNGUARDED: Final[dict[tuple[str, str], str]] = {
    ("POST", "/api/v1/auth/login"): "signing in needs no permission",
    ("POST", "/api/v1/auth/refresh"): "the refresh token is the credential",
    ("POST", "/api/v1/auth/logout"): "anyone may end their own session",
    ("POST", "/api/v1/auth/password"): "anyone may change their own password",
}
# Callers lacking a permission go first, and DELETEs come last, so what one
# allowed call changes (a closed counter, a deleted role) cannot turn a later
# expected 403 into something else.
ROLES: Final = (DEVICE, STAFF, BRANCH_MANAGER, ADMIN)


@dataclass
class Staffed:
    world: World
    headers: dict[str, dict[str, str]]
    ids_x: dict[str, Any]
    ids_y: dict[str, Any]
    spec: dict[str, Any]


@pytest.fixture
def staffed(db_url: str) -> Iterator[Staffed]:
    with running_app(db_url) as world:
        x, y = world.branch_id, world.other_branch_id
        with world.session() as session:
            add_user(session, world.tenant_id, "manager", BRANCH_MANAGER, x)
            add_user(session, world.tenant_id, "kiosk", DEVICE, x)
            shared = seed_tenant_resources(session, world.tenant_id, x, "t")
            ids_x = {**shared, **seed_branch_resources(session, world.tenant_id, x, "x")}
            ids_y = {**shared, **seed_branch_resources(session, world.tenant_id, y, "y")}
        users = {ADMIN: "admin", BRANCH_MANAGER: "manager", STAFF: "staff1", DEVICE: "kiosk"}
        headers = {role: bearer(world.client, TENANT, name) for role, name in users.items()}
        yield Staffed(world, headers, ids_x, ids_y, world.app.openapi())


def _access(method: str, route: Any) -> list[Access] | None:
    """What the route requires (all of the list), or None when it is not known."""
    found = required_permissions(route)
    if found:
        return [Access((code,), branch_param is not None) for code, branch_param in found]
    policy = POLICIES.get((method, route.path))
    return None if policy is None else [policy]


def _fill(path: str, ids: dict[str, Any]) -> str:
    for name, kind in path_kinds(path).items():
        assert kind is not None, f"cannot fill {{{name}}} of {path}"
        assert kind in ids, f"no {kind} to fill {{{name}}} of {path}"
        path = path.replace("{" + name + "}", str(ids[kind]))
    return path


def _call(staffed: Staffed, role: str, method: str, route_path: str, ids: dict[str, Any]) -> Any:
    spec = staffed.spec
    has_body, body = example_body(spec, method, route_path, ids)
    return staffed.world.client.request(
        method,
        _fill(route_path, ids),
        params=example_query(spec, method, route_path, ids, optional=False),
        json=body if has_body else None,
        headers=staffed.headers[role],
    )


def test_every_api_route_states_its_permission(staffed: Staffed) -> None:
    routes = api_routes(staffed.world.app)
    keys = {(m, r.path) for m, r in routes}
    unknown = [
        f"{m} {r.path}" for m, r in routes if (m, r.path) not in UNGUARDED and _access(m, r) is None
    ]
    assert not unknown, f"say what these routes require in POLICIES: {unknown}"
    stale = sorted(set(POLICIES) - keys) + sorted(set(UNGUARDED) - keys)
    assert not stale, f"no such routes any more: {stale}"
    doubled = [k for m, r in routes if (k := (m, r.path)) in POLICIES and required_permissions(r)]
    assert not doubled, f"require(...) already states these; drop them from POLICIES: {doubled}"
    named = {code for policy in POLICIES.values() for code in policy.any_of}
    assert named <= ALL_PERMISSIONS, named - ALL_PERMISSIONS


def test_each_role_is_refused_exactly_what_it_lacks(staffed: Staffed) -> None:
    routes = [(m, r) for m, r in api_routes(staffed.world.app) if (m, r.path) not in UNGUARDED]
    routes.sort(key=lambda pair: pair[0] == "DELETE")
    problems: list[str] = []
    checked = 0
    for method, route in routes:
        access = _access(method, route)
        if access is None:
            continue  # reported by test_every_api_route_states_its_permission
        for role in ROLES:
            allowed = all(a.allows(role) for a in access)
            response = _call(staffed, role, method, route.path, staffed.ids_x)
            status = response.status_code
            checked += 1
            where = f"{role} {method} {route.path}"
            if status >= 500:
                problems.append(f"{where}: {status}: {response.text[:300]}")
            elif status == 422:
                problems.append(
                    f"{where}: 422, the matrix sent no plausible input: {response.text}"
                )
            elif allowed and status in (401, 403):
                problems.append(f"{where}: {status} though allowed: {response.text[:300]}")
            elif not allowed and status != 403:
                problems.append(f"{where}: {status}, want 403: {response.text[:300]}")
    assert checked, "no permission-guarded routes found"
    assert not problems, "\n".join(problems)


def test_branch_roles_do_not_reach_another_branch(staffed: Staffed) -> None:
    routes = [(m, r) for m, r in api_routes(staffed.world.app) if (m, r.path) not in UNGUARDED]
    routes.sort(key=lambda pair: pair[0] == "DELETE")
    problems: list[str] = []
    for method, route in routes:
        if not set(path_kinds(route.path).values()) & BRANCH_OWNED:
            continue
        for role in (DEVICE, STAFF, BRANCH_MANAGER):
            response = _call(staffed, role, method, route.path, staffed.ids_y)
            if response.status_code not in (403, 404):
                problems.append(
                    f"{role} at X, {method} {route.path} at Y: {response.status_code}"
                    f" {response.text[:300]}"
                )
    assert not problems, "\n".join(problems)
