"""The administration API: branches, services, counters, users, roles, API keys, audit.

Tokens are forged with the real signing key (:func:`forge_token`) rather than
obtained by logging in, which would cost an argon2 verification each.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from core.permissions import STAFF
from server.models import ApiKey, AuditLog, User
from server.security.api_keys import generate_api_key
from server.services import rbac, tenants
from tests.server.api_support import World, forge_token, running_app

API = "/api/v1"


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    with running_app(db_url) as world:
        yield world


def _admin(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {forge_token(world)}"}


def _staff(world: World) -> dict[str, str]:
    token = forge_token(world, user_id=world.staff_id, roles=[STAFF])
    return {"Authorization": f"Bearer {token}"}


def _call(
    world: World, method: str, path: str, headers: dict[str, str], body: Any = None, **params: Any
) -> tuple[int, Any]:
    response = world.client.request(
        method, API + path, headers=headers, json=body, params=params or None
    )
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", response.text
    return response.status_code, (response.json() if response.content else None)


def _bad_field(status_body: tuple[int, Any]) -> str:
    status, body = status_body
    assert status == 422, body
    fields: list[str] = [e["field"] for e in body["errors"]]
    return fields[0]


def _actions(world: World, object_id: str) -> list[str]:
    with world.session() as session:
        rows = session.scalars(
            select(AuditLog.action).where(AuditLog.object_id == object_id).order_by(AuditLog.seq)
        )
        return list(rows)


# --- branches, services, counters --------------------------------------------------


def test_branches_crud(world: World) -> None:
    admin = _admin(world)
    status, made = _call(
        world, "POST", "/branches", admin, {"name": "South", "code": "south", "time_zone": "UTC"}
    )
    assert status == 201
    assert made["code"] == "SOUTH"
    status, listed = _call(world, "GET", "/branches", admin)
    assert [b["code"] for b in listed] == ["MAIN", "NORTH", "SOUTH"]
    path = f"/branches/{made['id']}"
    status, patched = _call(
        world, "PATCH", path, admin, {"name": "South Side", "time_zone": "Europe/Rome"}
    )
    assert status == 200
    assert (patched["name"], patched["time_zone"]) == (
        "South Side",
        "Europe/Rome",
    )
    assert _call(world, "GET", path, admin)[1] == patched
    assert _call(world, "DELETE", path, admin)[0] == 405
    dup = {"name": "Again", "code": "SOUTH", "time_zone": "UTC"}
    assert _call(world, "POST", "/branches", admin, dup)[0] == 409
    bad_zone = {"name": "X", "code": "X", "time_zone": "Mars/Olympus"}
    assert _bad_field(_call(world, "POST", "/branches", admin, bad_zone)) == "time_zone"
    assert _bad_field(_call(world, "PATCH", path, admin, {"time_zone": "+02:00"})) == "time_zone"
    assert _bad_field(_call(world, "POST", "/branches", admin, {"name": "X"})) == "code"
    assert _actions(world, made["id"]) == ["branch.created", "branch.updated"]


def test_branch_scoped_users_see_only_their_branches(world: World) -> None:
    staff = _staff(world)
    status, listed = _call(world, "GET", "/branches", staff)
    assert status == 200
    assert [b["id"] for b in listed] == [str(world.branch_id)]
    assert _call(world, "GET", f"/branches/{world.branch_id}", staff)[0] == 200
    assert _call(world, "GET", f"/branches/{world.other_branch_id}", staff)[0] == 404
    new = {"name": "X", "code": "X", "time_zone": "UTC"}
    assert _call(world, "POST", "/branches", staff, new)[0] == 403
    patch = {"name": "Mine now"}
    assert _call(world, "PATCH", f"/branches/{world.branch_id}", staff, patch)[0] == 403


def test_services_and_counters(world: World) -> None:
    admin = _admin(world)
    base = f"/branches/{world.branch_id}"
    status, svc = _call(world, "POST", f"{base}/services", admin, {"code": "a", "name": "Accounts"})
    assert status == 201
    assert (svc["code"], svc["active"], svc["target_wait_s"]) == ("A", True, None)
    bad = {"code": "A1", "name": "Bad"}
    assert _bad_field(_call(world, "POST", f"{base}/services", admin, bad)) == "code"
    dup = {"code": "A", "name": "Again"}
    assert _call(world, "POST", f"{base}/services", admin, dup)[0] == 409
    svc_path = f"{base}/services/{svc['id']}"
    status, patched = _call(
        world, "PATCH", svc_path, admin, {"target_wait_s": 600, "active": False}
    )
    assert (patched["target_wait_s"], patched["active"]) == (600, False)
    assert (
        _call(world, "PATCH", svc_path, admin, {"target_wait_s": None})[1]["target_wait_s"] is None
    )
    assert _bad_field(_call(world, "PATCH", svc_path, admin, {"target_wait_s": 0})) == (
        "target_wait_s"
    )
    assert [s["id"] for s in _call(world, "GET", f"{base}/services", admin)[1]] == [svc["id"]]
    # A service of the other branch is not found under this one.
    status, other = _call(
        world,
        "POST",
        f"/branches/{world.other_branch_id}/services",
        admin,
        {"code": "B", "name": "Other"},
    )
    assert _call(world, "GET", f"{base}/services/{other['id']}", admin)[0] == 404

    counter = {"number": 1, "name": "Desk 1", "work_profile": [svc["id"]]}
    status, made = _call(world, "POST", f"{base}/counters", admin, counter)
    assert status == 201
    assert made["work_profile"] == [svc["id"]]
    assert _call(world, "POST", f"{base}/counters", admin, counter)[0] == 409
    foreign = {"number": 2, "name": "Desk 2", "work_profile": [other["id"]]}
    assert _bad_field(_call(world, "POST", f"{base}/counters", admin, foreign)) == "work_profile"
    c_path = f"{base}/counters/{made['id']}"
    bad_patch = {"work_profile": [str(uuid.uuid4())]}
    assert _bad_field(_call(world, "PATCH", c_path, admin, bad_patch)) == "work_profile"
    status, patched = _call(
        world, "PATCH", c_path, admin, {"name": "Window 1", "work_profile": [], "active": False}
    )
    assert (patched["name"], patched["work_profile"], patched["active"]) == ("Window 1", [], False)
    assert _call(world, "GET", c_path, admin)[1] == patched
    assert _actions(world, made["id"]) == ["counter.created", "counter.updated"]
    assert _actions(world, svc["id"]) == ["service.created", "service.updated", "service.updated"]
    # Staff read the branch's services and counters (queue work) but do not set them up.
    staff = _staff(world)
    assert _call(world, "GET", f"{base}/counters", staff)[0] == 200
    assert _call(world, "GET", f"{base}/services", staff)[0] == 200
    assert _call(world, "POST", f"{base}/counters", staff, {"number": 9, "name": "X"})[0] == 403
    assert _call(world, "PATCH", c_path, staff, {"name": "Y"})[0] == 403


# --- users and roles -----------------------------------------------------------------


def _role_id(world: World, name: str) -> str:
    with world.session() as session:
        return str(rbac.role_by_name(session, world.tenant_id, name).id)


def test_users_crud_and_roles(world: World) -> None:
    admin = _admin(world)
    staff_role = _role_id(world, STAFF)
    new = {
        "username": "Anna",
        "password": "a long enough passphrase",
        "display_name": "Anna A",
        "email": "anna@Example.COM",
        "roles": [{"role_id": staff_role, "branch_id": str(world.branch_id)}],
    }
    status, anna = _call(world, "POST", "/users", admin, new)
    assert status == 201, anna
    assert anna["email"] == "anna@example.com"
    assert anna["roles"] == [
        {"role_id": staff_role, "role": STAFF, "branch_id": str(world.branch_id)}
    ]
    assert "password" not in str(anna)
    clash = {**new, "username": "ANNA", "roles": []}
    assert _call(world, "POST", "/users", admin, clash)[0] == 409
    bad_mail = {**new, "username": "bob", "email": "not an address"}
    assert _bad_field(_call(world, "POST", "/users", admin, bad_mail)) == "email"
    unknown_role = {**new, "username": "carl", "roles": [{"role_id": str(uuid.uuid4())}]}
    assert _bad_field(_call(world, "POST", "/users", admin, unknown_role)) == "role_id"

    path = f"/users/{anna['id']}"
    status, patched = _call(world, "PATCH", path, admin, {"display_name": "Anna B", "email": None})
    assert (patched["display_name"], patched["email"]) == ("Anna B", None)
    assert _bad_field(_call(world, "PATCH", path, admin, {"email": "@"})) == "email"

    # Roles: tenant-wide staff is refused (it is branch-scoped), a repeat is a 409.
    grant = {"role_id": staff_role, "branch_id": str(world.other_branch_id)}
    status, body = _call(world, "POST", f"{path}/roles", admin, grant)
    assert status == 201
    assert len(body["roles"]) == 2
    assert _call(world, "POST", f"{path}/roles", admin, grant)[0] == 409
    assert _bad_field(_call(world, "POST", f"{path}/roles", admin, {"role_id": staff_role})) == (
        "branch_id"
    )
    gone = {"role_id": staff_role, "branch_id": str(world.other_branch_id)}
    assert _call(world, "DELETE", f"{path}/roles", admin, **gone)[0] == 204
    assert _call(world, "DELETE", f"{path}/roles", admin, **gone)[0] == 404
    assert len(_call(world, "GET", path, admin)[1]["roles"]) == 1

    # Pages of two by username: admin, anna, gone, staff1.
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        status, page = _call(world, "GET", "/users", admin, **params)
        assert status == 200
        assert len(page["items"]) <= 2
        seen += [u["username"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["admin", "Anna", "gone", "staff1"]
    assert "argon2" not in world.client.get(API + "/users", headers=admin).text
    assert _actions(world, anna["id"])[:2] == ["user.created", "user.role_assigned"]
    assert _call(world, "GET", "/users", _staff(world))[0] == 403


def test_disabling_a_user_ends_their_sessions(world: World) -> None:
    admin = _admin(world)
    staff_token = forge_token(world, user_id=world.staff_id, roles=[STAFF])
    assert world.whoami(staff_token) == 200
    status, body = _call(world, "PATCH", f"/users/{world.staff_id}", admin, {"disabled": True})
    assert status == 200
    assert body["disabled"] is True
    assert world.whoami(staff_token) == 401
    assert _actions(world, str(world.staff_id))[-1] == "user.disabled"
    # The only administrator cannot be disabled: nobody could administer the tenant.
    status, body = _call(world, "PATCH", f"/users/{world.admin_id}", admin, {"disabled": True})
    assert status == 409, body
    assert world.whoami(forge_token(world)) == 200


def test_roles_crud(world: World) -> None:
    admin = _admin(world)
    new = {"name": "Greeter", "description": "Front door", "permissions": ["queue.view"]}
    status, role = _call(world, "POST", "/roles", admin, new)
    assert status == 201
    assert role["permissions"] == ["queue.view"]
    assert not role["is_builtin"]
    assert _call(world, "POST", "/roles", admin, new)[0] == 409
    unknown = {**new, "name": "Bad", "permissions": ["queue.view", "moon.land"]}
    assert _bad_field(_call(world, "POST", "/roles", admin, unknown)) == "permissions"
    path = f"/roles/{role['id']}"
    status, patched = _call(
        world, "PATCH", path, admin, {"permissions": ["queue.view", "tickets.issue"]}
    )
    assert patched["permissions"] == ["queue.view", "tickets.issue"]
    assert _bad_field(_call(world, "PATCH", path, admin, {"permissions": ["nope"]})) == (
        "permissions"
    )
    assert "Greeter" in [r["name"] for r in _call(world, "GET", "/roles", admin)[1]]
    assert _call(world, "DELETE", path, admin)[0] == 204
    assert _call(world, "GET", path, admin)[0] == 404
    builtin = f"/roles/{_role_id(world, STAFF)}"
    assert _call(world, "DELETE", builtin, admin)[0] == 409
    admin_role = f"/roles/{_role_id(world, 'tenant_admin')}"
    assert _call(world, "PATCH", admin_role, admin, {"permissions": []})[0] == 409
    assert _actions(world, role["id"]) == [
        "role.created",
        "role.permissions_changed",
        "role.deleted",
    ]
    assert _call(world, "GET", "/roles", _staff(world))[0] == 403


# --- API keys --------------------------------------------------------------------------


def test_api_keys_are_shown_once_scoped_and_revocable(world: World) -> None:
    admin = _admin(world)
    new = {"name": "Kiosk sync", "scopes": ["users.view", "api_keys.manage"], "expires_in_days": 30}
    status, made = _call(world, "POST", "/api-keys", admin, new)
    assert status == 201
    plaintext = made["key"]
    assert plaintext.startswith("qd_")
    assert plaintext[3:].startswith(made["prefix"])
    assert made["expires_at"] is not None
    status, listed = _call(world, "GET", "/api-keys", admin)
    assert [k["id"] for k in listed] == [made["id"]]
    assert "key" not in listed[0]
    assert plaintext not in str(listed)
    with world.session() as session:
        stored = [
            str(v)
            for key in session.scalars(select(ApiKey))
            for v in (key.key_hash, key.prefix, key.name, key.scopes)
        ]
        logged = [str(row.details) for row in session.scalars(select(AuditLog))]
    assert not [v for v in stored + logged if plaintext in v]

    as_key = {"X-API-Key": plaintext}
    assert _call(world, "GET", "/users", as_key)[0] == 200
    assert _call(world, "GET", "/roles", as_key)[0] == 403  # beyond the key's scopes
    # A key cannot mint a key with more than it holds itself.
    wider = {**new, "scopes": ["audit.view"]}
    assert _bad_field(_call(world, "POST", "/api-keys", as_key, wider)) == "scopes"
    assert _bad_field(_call(world, "POST", "/api-keys", admin, {**new, "scopes": ["x.y"]})) == (
        "scopes"
    )
    for days in (0, 366, None):
        body = {k: v for k, v in {**new, "expires_in_days": days}.items() if v is not None}
        assert _bad_field(_call(world, "POST", "/api-keys", admin, body)) == "expires_in_days"

    assert _call(world, "DELETE", f"/api-keys/{made['id']}", admin)[0] == 204
    assert _call(world, "GET", "/users", as_key)[0] == 401
    assert _call(world, "GET", "/api-keys", admin)[1][0]["revoked_at"] is not None
    assert _actions(world, made["id"]) == ["api_key.created", "api_key.revoked"]
    assert _call(world, "GET", "/api-keys", _staff(world))[0] == 403


# --- audit ------------------------------------------------------------------------------


def test_audit_filters_and_pages(world: World) -> None:
    admin = _admin(world)
    for code in ("X1", "X2", "X3"):
        body = {"name": code, "code": code, "time_zone": "UTC"}
        assert _call(world, "POST", "/branches", admin, body)[0] == 201
    _call(world, "GET", "/users", _staff(world))  # a denial, audited

    status, page = _call(world, "GET", "/audit", admin, action="branch.created", limit=2)
    assert status == 200
    first = [e["details"]["code"] for e in page["items"]]
    assert first == ["X3", "X2"]
    assert page["next_cursor"] is not None
    status, rest = _call(
        world, "GET", "/audit", admin, action="branch.created", limit=2, cursor=page["next_cursor"]
    )
    assert [e["details"]["code"] for e in rest["items"]] == ["X1", "NORTH"]
    status, denied = _call(world, "GET", "/audit", admin, result="denied")
    assert [(e["actor_id"], e["reason"]) for e in denied["items"]] == [
        (str(world.staff_id), "users.view")
    ]
    by_admin = _call(world, "GET", "/audit", admin, actor_id=str(world.admin_id))[1]["items"]
    assert {e["action"] for e in by_admin} == {"branch.created"}
    until = by_admin[-1]["at"]
    older = _call(world, "GET", "/audit", admin, until=until, object_type="branch")[1]["items"]
    assert {e["object_id"] for e in older} == {str(world.branch_id), str(world.other_branch_id)}
    assert _call(world, "GET", "/audit", admin, since=until, limit=500)[1]["next_cursor"] is None
    assert _bad_field(_call(world, "GET", "/audit", admin, limit=0)) == "limit"
    assert _bad_field(_call(world, "GET", "/audit", admin, since="2024-01-01T00:00:00")) == "since"
    assert _bad_field(_call(world, "GET", "/audit", admin, result="maybe")) == "result"
    assert _call(world, "GET", "/audit", _staff(world))[0] == 403


# --- tenants stay apart ----------------------------------------------------------------


def test_another_tenants_ids_are_not_found(world: World) -> None:
    with world.session() as session:
        other = tenants.create_tenant(session, "globex", "Globex")
        branch = tenants.create_branch(session, other.id, "Hub", "HUB", "UTC")
        service = tenants.create_service(session, other.id, branch.id, "G", "General")
        counter = tenants.create_counter(session, other.id, branch.id, 1, "Desk", [service.id])
        role = rbac.create_role(session, other.id, "Theirs", ["queue.view"])
        user = User(tenant_id=other.id, username="boss", password_hash="x")
        session.add(user)
        session.flush()
        new = generate_api_key()
        key = ApiKey(
            tenant_id=other.id,
            user_id=user.id,
            name="theirs",
            prefix=new.prefix,
            key_hash=new.key_hash,
            scopes=["queue.view"],
        )
        session.add(key)
        session.flush()
        ids = {n: str(o.id) for n, o in [("b", branch), ("s", service), ("c", counter)]}
        ids |= {"r": str(role.id), "u": str(user.id), "k": str(key.id)}
    admin = _admin(world)
    b = ids["b"]
    mine = f"/branches/{world.branch_id}"
    for method, path, body in [
        ("GET", f"/branches/{b}", None),
        ("PATCH", f"/branches/{b}", {"name": "Mine"}),
        ("GET", f"/branches/{b}/services", None),
        ("POST", f"/branches/{b}/services", {"code": "Z", "name": "Z"}),
        ("GET", f"/branches/{b}/services/{ids['s']}", None),
        ("GET", f"{mine}/services/{ids['s']}", None),
        ("PATCH", f"/branches/{b}/services/{ids['s']}", {"active": False}),
        ("GET", f"/branches/{b}/counters", None),
        ("GET", f"/branches/{b}/counters/{ids['c']}", None),
        ("PATCH", f"{mine}/counters/{ids['c']}", {"active": False}),
        ("GET", f"/users/{ids['u']}", None),
        ("PATCH", f"/users/{ids['u']}", {"disabled": True}),
        ("GET", f"/roles/{ids['r']}", None),
        ("PATCH", f"/roles/{ids['r']}", {"permissions": []}),
        ("DELETE", f"/roles/{ids['r']}", None),
        ("DELETE", f"/api-keys/{ids['k']}", None),
    ]:
        assert _call(world, method, path, admin, body)[0] == 404, (method, path)
    # A branch manager elsewhere learns nothing more than the administrator does.
    staff = _staff(world)
    assert _call(world, "GET", f"/branches/{b}/services", staff)[0] == 404
    # Their role cannot be given to one of ours, nor our role at their branch.
    grant = {"role_id": ids["r"]}
    assert _call(world, "POST", f"/users/{world.staff_id}/roles", admin, grant)[0] == 422
    grant = {"role_id": _role_id(world, STAFF), "branch_id": b}
    assert _call(world, "POST", f"/users/{world.staff_id}/roles", admin, grant)[0] == 422
    # Lists hold only our own rows.
    listed = str([_call(world, "GET", p, admin)[1] for p in ("/branches", "/roles", "/api-keys")])
    listed += str(_call(world, "GET", "/users", admin)[1])
    listed += str(_call(world, "GET", "/audit", admin, limit=500)[1])
    assert not [v for v in ids.values() if v in listed]


def test_nobody_gives_more_than_they_hold(world: World) -> None:
    with world.session() as session:
        hr = rbac.create_role(session, world.tenant_id, "HR", ["users.view", "users.manage"])
        lead = rbac.create_role(session, world.tenant_id, "Lead", ["roles.manage", "queue.view"])
        for role in (hr, lead):
            rbac.assign_role(session, world.tenant_id, world.staff_id, role.id)
    admin_role = _role_id(world, "tenant_admin")
    staff = _staff(world)
    grant = {"role_id": admin_role}
    assert _call(world, "POST", f"/users/{world.staff_id}/roles", staff, grant)[0] == 403
    new_user = {"username": "mole", "password": "a long enough passphrase", "roles": [grant]}
    assert _call(world, "POST", "/users", staff, new_user)[0] == 403
    wide = {"name": "Wide", "permissions": ["queue.view", "audit.view"]}
    assert _call(world, "POST", "/roles", staff, wide)[0] == 403
    narrow = {"name": "Narrow", "permissions": ["queue.view"]}
    assert _call(world, "POST", "/roles", staff, narrow)[0] == 201
    with world.session() as session:
        assert session.scalar(select(User).where(User.username == "mole")) is None
        denied = session.scalars(select(AuditLog.reason).where(AuditLog.result == "denied"))
        assert list(denied) == ["users.manage", "users.manage", "roles.manage"]
