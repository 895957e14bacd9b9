"""RBAC: grants from roles, branch scoping, the grant cache, role changes, tenant isolation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import InvalidValue
from core.permissions import ALL_PERMISSIONS
from server.db import session_scope
from server.models import AuditLog, User
from server.services import rbac, tenants
from server.services.errors import Conflict, NotFound
from server.services.rbac import GrantCache, Grants

A, B = uuid.uuid4(), uuid.uuid4()


# --- Grants, no database ---------------------------------------------------------


def test_grants_answer_by_scope() -> None:
    grants = Grants(frozenset({"reports.tenant"}), {A: frozenset({"tickets.call"}), B: frozenset()})
    assert grants.allows("reports.tenant")
    assert grants.allows("reports.tenant", A)
    assert grants.allows("tickets.call", A)
    assert not grants.allows("tickets.call", B)
    assert not grants.allows("tickets.call")  # no branch: a tenant-wide grant is needed
    assert grants.allows_somewhere("tickets.call")
    assert not grants.allows_somewhere("users.manage")
    assert grants.branches_for("tickets.call") == frozenset({A})
    assert grants.branches_for("reports.tenant") is None
    assert grants.branches_for("users.manage") == frozenset()
    assert grants.permissions() == {"reports.tenant", "tickets.call"}
    assert B not in grants.by_branch  # empty scopes are dropped


def test_narrowed_grants_never_exceed_the_scopes() -> None:
    grants = Grants(frozenset({"audit.view", "users.manage"}), {A: frozenset({"tickets.call"})})
    narrowed = grants.narrowed(frozenset({"audit.view", "tickets.call", "backups.manage"}))
    assert narrowed == Grants(frozenset({"audit.view"}), {A: frozenset({"tickets.call"})})
    assert grants.narrowed(frozenset()) == rbac.NO_GRANTS


def test_grants_cannot_be_changed() -> None:
    source = {A: frozenset({"tickets.call"})}
    grants = Grants(frozenset(), source)
    source[B] = frozenset({"users.manage"})
    assert not grants.allows("users.manage", B)
    with pytest.raises(TypeError):
        grants.by_branch[B] = frozenset()  # type: ignore[index]


# --- with a database -----------------------------------------------------------------


@dataclass
class World:
    tenant_id: uuid.UUID
    branch_a: uuid.UUID
    branch_b: uuid.UUID
    user_id: uuid.UUID
    other_tenant_id: uuid.UUID
    other_role_id: uuid.UUID
    other_branch_id: uuid.UUID
    other_user_id: uuid.UUID


def _user(session: Session, tenant_id: uuid.UUID, username: str) -> uuid.UUID:
    # Added directly: hashing a password would only slow these tests down.
    user = User(tenant_id=tenant_id, username=username, password_hash="unused")
    session.add(user)
    session.flush()
    return user.id


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    rbac.grant_cache.clear()
    yield
    rbac.grant_cache.clear()


@pytest.fixture
def world(session_factory: sessionmaker[Session]) -> World:
    with session_scope(session_factory) as session:
        tenant = tenants.create_tenant(session, "acme", "Acme")
        branch_a = tenants.create_branch(session, tenant.id, "A", "A", "Europe/Berlin")
        branch_b = tenants.create_branch(session, tenant.id, "B", "B", "Europe/Berlin")
        other = tenants.create_tenant(session, "other", "Other")
        other_branch = tenants.create_branch(session, other.id, "X", "X", "UTC")
        return World(
            tenant.id,
            branch_a.id,
            branch_b.id,
            _user(session, tenant.id, "anna"),
            other.id,
            rbac.role_by_name(session, other.id, "staff").id,
            other_branch.id,
            _user(session, other.id, "otto"),
        )


def _assign(factory: sessionmaker[Session], w: World, role: str, branch: uuid.UUID | None) -> None:
    with session_scope(factory) as session:
        role_id = rbac.role_by_name(session, w.tenant_id, role).id
        rbac.assign_role(session, w.tenant_id, w.user_id, role_id, branch)


def _grants(factory: sessionmaker[Session], w: World, cache: GrantCache | None = None) -> Grants:
    with session_scope(factory) as session:
        return (cache or rbac.grant_cache).get(session, w.tenant_id, w.user_id)


def test_grants_come_from_roles_at_their_branch(
    session_factory: sessionmaker[Session], world: World
) -> None:
    assert _grants(session_factory, world) == rbac.NO_GRANTS
    _assign(session_factory, world, "staff", world.branch_a)
    grants = _grants(session_factory, world)
    assert grants.allows("tickets.call", world.branch_a)
    assert not grants.allows("tickets.call", world.branch_b)
    assert not grants.allows("users.manage", world.branch_a)
    _assign(session_factory, world, "tenant_admin", None)
    grants = _grants(session_factory, world)
    assert grants.tenant_wide == ALL_PERMISSIONS
    assert grants.allows("tickets.call", world.branch_b)


def test_role_changes_invalidate_the_cache(
    session_factory: sessionmaker[Session], world: World
) -> None:
    _assign(session_factory, world, "staff", world.branch_a)
    assert _grants(session_factory, world).allows("tickets.cancel", world.branch_a)
    with session_scope(session_factory) as session:
        staff = rbac.role_by_name(session, world.tenant_id, "staff")
        codes = {p.code for p in staff.permissions} - {"tickets.cancel"}
        rbac.update_role_permissions(session, world.tenant_id, staff.id, codes)
    assert not _grants(session_factory, world).allows("tickets.cancel", world.branch_a)
    with session_scope(session_factory) as session:
        rbac.unassign_role(session, world.tenant_id, world.user_id, staff.id, world.branch_a)
    assert _grants(session_factory, world) == rbac.NO_GRANTS
    with session_scope(session_factory) as session:
        role = rbac.create_role(session, world.tenant_id, "auditor", ["audit.view"])
        rbac.assign_role(session, world.tenant_id, world.user_id, role.id)
    assert _grants(session_factory, world).allows("audit.view")
    with session_scope(session_factory) as session:
        rbac.delete_role(session, world.tenant_id, role.id)
        actions = session.scalars(
            select(AuditLog.action).where(AuditLog.tenant_id == world.tenant_id)
        ).all()
    assert _grants(session_factory, world) == rbac.NO_GRANTS
    for action in ("role.permissions_changed", "user.role_unassigned", "role.deleted"):
        assert action in actions


def test_other_processes_changes_show_after_the_ttl(
    session_factory: sessionmaker[Session], world: World
) -> None:
    now = [0.0]
    cache = GrantCache(ttl_s=10, clock=lambda: now[0])
    assert _grants(session_factory, world, cache) == rbac.NO_GRANTS
    _assign(session_factory, world, "staff", world.branch_a)  # invalidates only grant_cache
    assert _grants(session_factory, world, cache) == rbac.NO_GRANTS
    now[0] = 10.5
    assert _grants(session_factory, world, cache).allows("tickets.call", world.branch_a)


def test_another_tenants_ids_are_not_found(
    session_factory: sessionmaker[Session], world: World
) -> None:
    w = world
    with session_scope(session_factory) as session:
        staff = rbac.role_by_name(session, w.tenant_id, "staff").id
        with pytest.raises(NotFound):
            rbac.get_role(session, w.tenant_id, w.other_role_id)
        with pytest.raises(NotFound):
            rbac.update_role_permissions(session, w.tenant_id, w.other_role_id, ["queue.view"])
        with pytest.raises(NotFound):
            rbac.delete_role(session, w.tenant_id, w.other_role_id)
        with pytest.raises(NotFound):
            rbac.assign_role(session, w.tenant_id, w.user_id, w.other_role_id, w.branch_a)
        with pytest.raises(NotFound):
            rbac.assign_role(session, w.tenant_id, w.other_user_id, staff, w.branch_a)
        with pytest.raises(NotFound):
            rbac.assign_role(session, w.tenant_id, w.user_id, staff, w.other_branch_id)
        with pytest.raises(NotFound):
            tenants.create_service(session, w.tenant_id, w.other_branch_id, "A", "Accounts")
    # The other tenant's user has no grants in this tenant.
    with session_scope(session_factory) as session:
        assert rbac.grant_cache.get(session, w.tenant_id, w.other_user_id) == rbac.NO_GRANTS


def test_role_input_is_validated(session_factory: sessionmaker[Session], world: World) -> None:
    w = world
    with session_scope(session_factory) as session:
        with pytest.raises(InvalidValue, match=r"tickets\.fly, vip\.lounge"):
            rbac.create_role(
                session, w.tenant_id, "odd", ["queue.view", "vip.lounge", "tickets.fly"]
            )
        with pytest.raises(Conflict, match="already exists"):
            rbac.create_role(session, w.tenant_id, "staff", ["queue.view"])
        staff = rbac.role_by_name(session, w.tenant_id, "staff").id
        admin = rbac.role_by_name(session, w.tenant_id, "tenant_admin").id
        with pytest.raises(InvalidValue, match="at a branch"):
            rbac.assign_role(session, w.tenant_id, w.user_id, staff, None)
        with pytest.raises(InvalidValue, match="tenant-wide"):
            rbac.assign_role(session, w.tenant_id, w.user_id, admin, w.branch_a)
        with pytest.raises(Conflict, match="built-in"):
            rbac.delete_role(session, w.tenant_id, staff)
        with pytest.raises(Conflict, match="every permission"):
            rbac.update_role_permissions(session, w.tenant_id, admin, ["queue.view"])
        rbac.assign_role(session, w.tenant_id, w.user_id, staff, w.branch_a)
        with pytest.raises(Conflict, match="already has"):
            rbac.assign_role(session, w.tenant_id, w.user_id, staff, w.branch_a)
        rbac.assign_role(session, w.tenant_id, w.user_id, admin)
        with pytest.raises(Conflict, match="last tenant_admin"):
            rbac.unassign_role(session, w.tenant_id, w.user_id, admin)
        with pytest.raises(NotFound):
            rbac.unassign_role(session, w.tenant_id, w.user_id, staff, w.branch_b)
