"""Tenant isolation over every API route: another tenant's ids answer 404 and never leak.

Tenant A ("acme") and tenant B ("globex") each get a branch, a service, a
counter, users, a ticket, a custom role, an API key and audit rows. B's
administrator, who holds every permission in B, then calls every route under
``/api/v1`` (taken from ``app.routes``, so new routes are walked too) with
A's ids in the path, and lists everything B can list. A's rows must come out
of this unchanged and none of A's ids may appear in what B is answered.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import pytest

from core.permissions import TENANT_ADMIN
from server.services import tenants
from tests.server.api_support import (
    World,
    add_user,
    api_routes,
    bearer,
    example_body,
    example_query,
    path_kinds,
    running_app,
    seed_branch_resources,
    seed_tenant_resources,
    tenant_snapshot,
    tenant_uuids,
)

OTHER: Final = "globex"
# Routes that address no tenant resource, each with why it is left out.
SKIPPED: Final = {
    ("POST", "/api/v1/auth/login"): "signs in by tenant slug; no id of another tenant to send",
    ("POST", "/api/v1/auth/refresh"): "takes only the caller's own refresh token",
    ("POST", "/api/v1/auth/logout"): "ends the caller's own session, which the walk needs",
    ("POST", "/api/v1/auth/password"): "changes the caller's own password, ending the session",
}
# What a route may answer when B sends one of A's ids in the body or a filter.
REFUSED_REFERENCE: Final = frozenset({400, 404, 409, 422})


@dataclass
class Tenants:
    world: World
    a_ids: dict[str, Any]
    b_ids: dict[str, Any]
    spec: dict[str, Any]


@pytest.fixture
def two_tenants(db_url: str) -> Iterator[Tenants]:
    with running_app(db_url) as world, world.session() as session:
        a_ids: dict[str, Any] = {
            **seed_branch_resources(session, world.tenant_id, world.branch_id, "a"),
            **seed_tenant_resources(session, world.tenant_id, world.branch_id, "a"),
        }
        other = tenants.create_tenant(session, OTHER, "Globex")
        branch = tenants.create_branch(session, other.id, "Globex Main", "MAIN", "Europe/Paris")
        add_user(session, other.id, "admin", TENANT_ADMIN, None)
        b_ids: dict[str, Any] = {
            **seed_branch_resources(session, other.id, branch.id, "b"),
            **seed_tenant_resources(session, other.id, branch.id, "b"),
        }
        session.commit()
        yield Tenants(world, a_ids, b_ids, world.app.openapi())


def _fill_path(
    path: str, ids: dict[str, Any], *, foreign: dict[str, dict[str, Any]] | None = None
) -> str | None:
    """``path`` with every parameter replaced by the id it names, or None if one is unknown.

    ``foreign`` maps parameter names to other ids to take theirs from (another tenant's).
    """
    for name, kind in path_kinds(path).items():
        source = foreign[name] if foreign is not None and name in foreign else ids
        if kind is None or kind not in source:
            return None
        path = path.replace("{" + name + "}", str(source[kind]))
    return path


def _leaks(text: str, a_uuids: set[str], sent: str) -> set[str]:
    """A's ids in ``text`` that the request did not itself carry."""
    lowered = text.lower()
    return {u for u in a_uuids if u in lowered and u not in sent}


def test_no_route_reaches_another_tenants_data(two_tenants: Tenants) -> None:
    world, a_ids, spec = two_tenants.world, two_tenants.a_ids, two_tenants.spec
    headers = bearer(world.client, OTHER, "admin")
    client = world.client
    with world.session() as session:
        a_uuids = {u.lower() for u in tenant_uuids(session, world.tenant_id)}
        before = tenant_snapshot(session, world.tenant_id)

    routes = [(m, r) for m, r in api_routes(world.app) if (m, r.path) not in SKIPPED]
    assert routes, "no API routes to walk"
    unfillable = [f"{m} {r.path}" for m, r in routes if _fill_path(r.path, a_ids) is None]
    problems: list[str] = []

    def call(
        method: str, route_path: str, path: str, query: dict[str, Any], *, all_ids: bool = False
    ) -> Any:
        has_body, body = example_body(spec, method, route_path, a_ids, all_ids=all_ids)
        response = client.request(
            method, path, params=query, headers=headers, json=body if has_body else None
        )
        sent = json.dumps([path, query, body])
        leaked = _leaks(response.text, a_uuids, sent)
        if leaked:
            problems.append(f"{method} {path} {query}: A's ids in the answer: {sorted(leaked)}")
        if response.status_code >= 500:
            problems.append(f"{method} {path} {query}: {response.status_code} {response.text}")
        return response, sent

    # Listings first: later calls put A's ids (sent by B) into B's own audit log.
    listings = [(m, r) for m, r in routes if not path_kinds(r.path) and m == "GET"]
    for method, route in listings:
        query = example_query(spec, method, route.path, two_tenants.b_ids, optional=False)
        response, _ = call(method, route.path, route.path, query)
        if response.status_code != 200:
            problems.append(f"{method} {route.path}: listing answered {response.status_code}")
        filtered = example_query(spec, method, route.path, a_ids, optional=True)
        if filtered != query:
            response, _ = call(method, route.path, route.path, filtered)
            if response.status_code not in (200, 404):
                problems.append(f"{method} {route.path} {filtered}: {response.status_code}")

    for method, route in routes:
        if (method, route) in listings:
            continue
        path = _fill_path(route.path, a_ids)
        if path is None:
            continue
        query = example_query(spec, method, route.path, a_ids, optional=False)
        response, sent = call(method, route.path, path, query)
        names_a = any(u in sent for u in a_uuids)
        if path_kinds(route.path):
            if response.status_code != 404:
                problems.append(
                    f"{method} {route.path} with A's ids: {response.status_code} (want 404)"
                    f" {response.text[:300]}"
                )
        elif names_a and response.status_code not in REFUSED_REFERENCE:
            problems.append(
                f"{method} {route.path} naming A's ids in the body: {response.status_code}"
                f" {response.text[:300]}"
            )

    # B's own resources in the path, one of A's beside them: in the path, the body or a filter.
    b_ids = two_tenants.b_ids
    for method, route in routes:
        params = path_kinds(route.path)
        if not params or _fill_path(route.path, a_ids) is None:
            continue
        for name in params if len(params) > 1 else ():
            path = _fill_path(route.path, b_ids, foreign={name: a_ids})
            assert path is not None
            query = example_query(spec, method, route.path, b_ids, optional=False)
            response, _ = call(method, route.path, path, query)
            if response.status_code != 404:
                problems.append(
                    f"{method} {route.path} with A's {name} among B's ids:"
                    f" {response.status_code} (want 404) {response.text[:300]}"
                )
        path = _fill_path(route.path, b_ids)
        assert path is not None
        query = example_query(spec, method, route.path, a_ids, optional=True)
        response, sent = call(method, route.path, path, query, all_ids=True)
        named = sorted(u for u in a_uuids if u in sent.replace(path, ""))
        if named and response.status_code not in REFUSED_REFERENCE:
            problems.append(
                f"{method} {path} (B's) naming A's {named} in body or query:"
                f" {response.status_code} {response.text[:300]}"
            )

    with world.session() as session:
        after = tenant_snapshot(session, world.tenant_id)
    changed = sorted(t for t in before if before[t] != after.get(t))
    assert not unfillable, (
        "the walk cannot fill these routes' path parameters; teach PARAM_KINDS or "
        f"SEGMENT_KINDS in tests/server/api_support.py: {unfillable}"
    )
    assert not problems, "\n".join(problems)
    assert not changed, f"B's calls changed A's rows in: {changed}"


def test_the_walk_fills_ids_by_name_and_by_segment() -> None:
    ids = {"branch": uuid.uuid4(), "service": uuid.uuid4(), "ticket": uuid.uuid4()}
    path = _fill_path("/api/v1/branches/{branch_id}/services/{id}", ids)
    assert path == f"/api/v1/branches/{ids['branch']}/services/{ids['service']}"
    assert _fill_path("/api/v1/tickets/{id}/call", ids) == f"/api/v1/tickets/{ids['ticket']}/call"
    assert _fill_path("/api/v1/things/{id}", ids) is None
    assert _fill_path("/api/v1/tickets/{id}/{action}", ids) is None
