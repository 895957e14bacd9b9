"""Role-based access control: roles, their assignments, and the grants they give.

A user's roles are assigned tenant-wide (``branch_id`` NULL) or at one branch.
:class:`Grants`, :func:`load_grants` and the process-wide :data:`grant_cache`
live in :mod:`server.services.grants` and are re-exported here; the functions
below change roles and assignments, write the audit log and invalidate the cache.

Assignment policy: a built-in role marked branch-scoped in
:data:`core.permissions.DEFAULT_ROLES` (branch_manager, staff, device) is only
assigned at a branch, and a built-in tenant-wide role (tenant_admin) only
tenant-wide, because "staff everywhere" would silently extend to every branch
opened later. Custom roles may be assigned either way. The built-in
tenant_admin role keeps the whole catalogue and cannot be edited, deleted, or
taken from the tenant's last enabled administrator, so a tenant cannot lock
itself out.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.errors import InvalidValue
from core.permissions import (
    ALL_PERMISSIONS,
    DEFAULT_ROLES,
    PERMISSIONS,
    TENANT_ADMIN,
    unknown_permissions,
)
from server.models import Branch, Permission, Role, User, UserRole, role_permissions
from server.services import audit
from server.services.audit import SYSTEM, Actor
from server.services.errors import Conflict, NotFound
from server.services.grants import (
    NO_GRANTS,
    GrantCache,
    Grants,
    grant_cache,
    invalidate_on_commit,
    load_grants,
)

__all__ = [
    "NO_GRANTS",
    "GrantCache",
    "Grants",
    "assign_role",
    "create_role",
    "delete_role",
    "find_assignment",
    "get_role",
    "grant_cache",
    "invalidate_on_commit",
    "load_grants",
    "permission_rows",
    "role_by_name",
    "seed_permissions",
    "unassign_role",
    "update_role_permissions",
]

# --- lookups within a tenant --------------------------------------------------------


def get_role(session: Session, tenant_id: uuid.UUID, role_id: uuid.UUID) -> Role:
    role = session.scalar(select(Role).where(Role.id == role_id, Role.tenant_id == tenant_id))
    if role is None:
        raise NotFound(f"no role {role_id}")
    return role


def role_by_name(session: Session, tenant_id: uuid.UUID, name: str) -> Role:
    role = session.scalar(select(Role).where(Role.tenant_id == tenant_id, Role.name == name))
    if role is None:
        raise NotFound(f"no role named {name!r}")
    return role


def _get_user(session: Session, tenant_id: uuid.UUID, user_id: uuid.UUID) -> User:
    user = session.scalar(select(User).where(User.id == user_id, User.tenant_id == tenant_id))
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user


def _check_branch(session: Session, tenant_id: uuid.UUID, branch_id: uuid.UUID) -> None:
    found = session.scalar(
        select(Branch.id).where(Branch.id == branch_id, Branch.tenant_id == tenant_id)
    )
    if found is None:
        raise NotFound(f"no branch {branch_id}")


def seed_permissions(session: Session) -> None:
    """Upsert the catalogue into the Permission table and give it all to tenant_admin.

    Codes no longer in the catalogue are left for a migration to remove. Safe
    to run from several processes at once (insert ... on conflict).
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = [{"code": p.code, "description": p.description} for p in PERMISSIONS.values()]
    statement = insert(Permission).values(values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[Permission.code],
            set_={"description": statement.excluded.description},
        )
    )
    # The built-in admin role is defined as "everything", also what was added later.
    admin_roles = select(Role.id).where(Role.is_builtin.is_(True), Role.name == TENANT_ADMIN)
    granted = {
        (row.role_id, row.permission_code)
        for row in session.execute(
            select(role_permissions.c.role_id, role_permissions.c.permission_code).where(
                role_permissions.c.role_id.in_(admin_roles)
            )
        )
    }
    missing = [
        {"role_id": role_id, "permission_code": code}
        for role_id in session.scalars(admin_roles)
        for code in sorted(ALL_PERMISSIONS)
        if (role_id, code) not in granted
    ]
    if missing:
        session.execute(role_permissions.insert(), missing)
        for role_id in {row["role_id"] for row in missing}:
            loaded = session.get(Role, role_id)  # from the identity map: no query
            if loaded is not None:
                session.expire(loaded, ["permissions"])  # its collection is now stale


def permission_rows(session: Session, codes: Iterable[str]) -> list[Permission]:
    """The Permission rows of ``codes``; unknown codes raise InvalidValue naming them."""
    wanted = set(codes)
    unknown = unknown_permissions(wanted)
    if unknown:
        raise InvalidValue("permissions", f"unknown permission codes: {', '.join(sorted(unknown))}")
    rows = list(session.scalars(select(Permission).where(Permission.code.in_(wanted))))
    if len(rows) < len(wanted):  # the catalogue grew since the table was seeded
        seed_permissions(session)
        rows = list(session.scalars(select(Permission).where(Permission.code.in_(wanted))))
    return sorted(rows, key=lambda p: p.code)


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > 100:
        raise InvalidValue("name", "a role name needs 1 to 100 characters")
    return cleaned


# --- changing roles --------------------------------------------------------------------


def create_role(
    session: Session,
    tenant_id: uuid.UUID,
    name: str,
    permissions: Iterable[str],
    *,
    description: str = "",
    actor: Actor = SYSTEM,
) -> Role:
    """A new custom role of the tenant; a duplicate name raises Conflict."""
    name = _clean_name(name)
    rows = permission_rows(session, permissions)
    if session.scalar(select(Role.id).where(Role.tenant_id == tenant_id, Role.name == name)):
        raise Conflict(f"a role named {name!r} already exists")
    role = Role(tenant_id=tenant_id, name=name, description=description.strip()[:500])
    role.permissions = rows
    session.add(role)
    session.flush()
    audit.record_as(
        session,
        actor,
        tenant_id=tenant_id,
        action="role.created",
        object_type="role",
        object_id=str(role.id),
        details={"name": name, "permissions": [p.code for p in rows]},
    )
    return role


def update_role_permissions(
    session: Session,
    tenant_id: uuid.UUID,
    role_id: uuid.UUID,
    permissions: Iterable[str],
    *,
    actor: Actor = SYSTEM,
) -> Role:
    """Replace the role's permission set; tenant_admin cannot be edited."""
    role = get_role(session, tenant_id, role_id)
    if role.is_builtin and role.name == TENANT_ADMIN:
        raise Conflict(f"the built-in role {TENANT_ADMIN!r} always has every permission")
    rows = permission_rows(session, permissions)
    before = {p.code for p in role.permissions}
    role.permissions = rows
    session.flush()
    after = {p.code for p in rows}
    audit.record_as(
        session,
        actor,
        tenant_id=tenant_id,
        action="role.permissions_changed",
        object_type="role",
        object_id=str(role.id),
        details={"added": sorted(after - before), "removed": sorted(before - after)},
    )
    invalidate_on_commit(session, tenant_id=tenant_id)
    return role


def delete_role(
    session: Session, tenant_id: uuid.UUID, role_id: uuid.UUID, *, actor: Actor = SYSTEM
) -> None:
    """Delete a custom role and its assignments; built-in roles raise Conflict."""
    role = get_role(session, tenant_id, role_id)
    if role.is_builtin:
        raise Conflict(f"the built-in role {role.name!r} cannot be deleted")
    name = role.name
    session.delete(role)
    session.flush()
    audit.record_as(
        session,
        actor,
        tenant_id=tenant_id,
        action="role.deleted",
        object_type="role",
        object_id=str(role_id),
        details={"name": name},
    )
    invalidate_on_commit(session, tenant_id=tenant_id)


def _check_scope(role: Role, branch_id: uuid.UUID | None) -> None:
    template = DEFAULT_ROLES.get(role.name) if role.is_builtin else None
    if template is None:
        return
    if template.branch_scoped and branch_id is None:
        raise InvalidValue("branch_id", f"role {role.name!r} is assigned at a branch: name one")
    if not template.branch_scoped and branch_id is not None:
        raise InvalidValue("branch_id", f"role {role.name!r} is tenant-wide: name no branch")


def find_assignment(
    session: Session, user_id: uuid.UUID, role_id: uuid.UUID, branch_id: uuid.UUID | None
) -> UserRole | None:
    """The assignment of ``role_id`` to ``user_id`` in that scope, if any."""
    query = select(UserRole).where(UserRole.user_id == user_id, UserRole.role_id == role_id)
    query = query.where(
        UserRole.branch_id.is_(None) if branch_id is None else UserRole.branch_id == branch_id
    )
    return session.scalar(query)


def _where(branch_id: uuid.UUID | None) -> str:
    return "tenant-wide" if branch_id is None else f"at branch {branch_id}"


def assign_role(
    session: Session,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    role_id: uuid.UUID,
    branch_id: uuid.UUID | None = None,
    *,
    actor: Actor = SYSTEM,
) -> UserRole:
    """Grant a role tenant-wide (``branch_id`` None) or at a branch of the tenant."""
    user = _get_user(session, tenant_id, user_id)
    role = get_role(session, tenant_id, role_id)
    if branch_id is not None:
        _check_branch(session, tenant_id, branch_id)
    _check_scope(role, branch_id)
    if find_assignment(session, user_id, role_id, branch_id) is not None:
        raise Conflict(f"{user.username!r} already has role {role.name!r} {_where(branch_id)}")
    assignment = UserRole(
        tenant_id=tenant_id, user_id=user_id, role_id=role_id, branch_id=branch_id
    )
    session.add(assignment)
    session.flush()
    audit.record_as(
        session,
        actor,
        tenant_id=tenant_id,
        action="user.role_assigned",
        object_type="user",
        object_id=str(user_id),
        details={"role": role.name, "branch_id": None if branch_id is None else str(branch_id)},
    )
    invalidate_on_commit(session, user_id=user_id)
    return assignment


def _other_admins(
    session: Session, tenant_id: uuid.UUID, role_id: uuid.UUID, user_id: uuid.UUID
) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(UserRole)
            .join(User, User.id == UserRole.user_id)
            .where(
                UserRole.tenant_id == tenant_id,
                UserRole.role_id == role_id,
                UserRole.branch_id.is_(None),
                UserRole.user_id != user_id,
                User.disabled.is_(False),
            )
        )
        or 0
    )


def unassign_role(
    session: Session,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    role_id: uuid.UUID,
    branch_id: uuid.UUID | None = None,
    *,
    actor: Actor = SYSTEM,
) -> None:
    """Take a role back; the tenant's last enabled tenant_admin keeps theirs."""
    user = _get_user(session, tenant_id, user_id)
    role = get_role(session, tenant_id, role_id)
    assignment = find_assignment(session, user_id, role_id, branch_id)
    if assignment is None:
        raise NotFound(f"{user.username!r} has no role {role.name!r} {_where(branch_id)}")
    last_admin = role.is_builtin and role.name == TENANT_ADMIN and branch_id is None
    if last_admin and not _other_admins(session, tenant_id, role_id, user_id):
        raise Conflict(f"{user.username!r} is the last {TENANT_ADMIN} of the tenant")
    session.delete(assignment)
    session.flush()
    audit.record_as(
        session,
        actor,
        tenant_id=tenant_id,
        action="user.role_unassigned",
        object_type="user",
        object_id=str(user_id),
        details={"role": role.name, "branch_id": None if branch_id is None else str(branch_id)},
    )
    invalidate_on_commit(session, user_id=user_id)
