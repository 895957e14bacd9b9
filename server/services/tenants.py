"""Creating tenants and their users, and the demo tenant.

Functions validate their input (raising :class:`core.errors.InvalidValue`),
refuse duplicates with :class:`~server.services.errors.Conflict` and write an
audit record. Branches, services and counters are made by
:mod:`server.services.branches` (re-exported here). :func:`ensure_demo` builds
(or refreshes) the demo tenant used by ``make run`` and the ``demo`` command.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidValue
from core.permissions import BRANCH_MANAGER, DEFAULT_ROLES, STAFF, TENANT_ADMIN
from server.models import (
    Branch,
    Counter,
    PauseReason,
    Service,
    Tenant,
    User,
    normalize_username,
    utc_now,
)
from server.security.passwords import hash_password, validate_new_password
from server.services import audit, rbac
from server.services.audit import SYSTEM, Actor
from server.services.auth import end_sessions
from server.services.branches import (
    clean_text,
    create_branch,
    create_counter,
    create_pause_reason,
    create_service,
)
from server.services.errors import Conflict, NotFound
from server.services.rbac import seed_permissions

__all__ = [
    "DemoInfo",
    "check_new_slug",
    "create_branch",
    "create_counter",
    "create_pause_reason",
    "create_service",
    "create_tenant",
    "create_user",
    "ensure_demo",
    "get_tenant",
    "seed_permissions",
    "tenant_by_slug",
]

SLUG: Final = re.compile(r"[a-z0-9-]{2,63}")
MAX_USERNAME: Final = 150

RoleSpec = tuple[str, uuid.UUID | None]  # (role name, branch id or None for tenant-wide)


def get_tenant(session: Session, tenant_id: uuid.UUID) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    return tenant


def tenant_by_slug(session: Session, slug: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    return tenant


def check_new_slug(session: Session, slug: str) -> str:
    """``slug`` stripped, if it is well-formed and free; else InvalidValue or Conflict."""
    slug = slug.strip()
    if not SLUG.fullmatch(slug):
        raise InvalidValue(
            "slug", f"{slug!r} must be 2 to 63 lower-case letters, digits or hyphens"
        )
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise Conflict(f"a tenant {slug!r} already exists")
    return slug


def create_tenant(session: Session, slug: str, name: str, *, actor: Actor = SYSTEM) -> Tenant:
    """A new tenant with the built-in roles of :data:`core.permissions.DEFAULT_ROLES`."""
    slug = check_new_slug(session, slug)
    name = clean_text("name", name, 200)
    seed_permissions(session)
    tenant = Tenant(slug=slug, name=name)
    session.add(tenant)
    session.flush()
    audit.record_as(
        session,
        actor,
        tenant_id=tenant.id,
        action="tenant.created",
        object_type="tenant",
        object_id=str(tenant.id),
        details={"slug": slug, "name": name},
    )
    for template in DEFAULT_ROLES.values():
        role = rbac.create_role(
            session,
            tenant.id,
            template.name,
            template.permissions,
            description=template.description,
            actor=actor,
        )
        role.is_builtin = True
    session.flush()
    return tenant


def _clean_username(username: str) -> str:
    cleaned = unicodedata.normalize("NFC", username.strip())
    if not cleaned or len(cleaned) > MAX_USERNAME:
        raise InvalidValue("username", f"needs 1 to {MAX_USERNAME} characters")
    if any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in cleaned):
        raise InvalidValue("username", "must not contain spaces or control characters")
    return cleaned


def create_user(
    session: Session,
    tenant: Tenant,
    username: str,
    password: str,
    *,
    display_name: str = "",
    email: str | None = None,
    roles: Iterable[RoleSpec] = (),
    actor: Actor = SYSTEM,
) -> User:
    """A new user with ``roles`` [(role name, branch id or None)].

    Usernames are unique per tenant ignoring case and width ("Anna" = "anna").
    """
    username = _clean_username(username)
    validate_new_password(password)  # PasswordPolicyError, a ValueError, names the rule
    wanted = list(roles)
    resolved = []
    for role_name, branch_id in wanted:
        try:
            resolved.append((rbac.role_by_name(session, tenant.id, role_name), branch_id))
        except NotFound:
            raise InvalidValue("role", f"no role named {role_name!r}") from None
    clash = session.scalar(
        select(User.username).where(
            User.tenant_id == tenant.id,
            User.username_normalized == normalize_username(username),
        )
    )
    if clash is not None:
        raise Conflict(f"username {username!r} is taken (by {clash!r}; case does not matter)")
    user = User(
        tenant_id=tenant.id,
        username=username,
        display_name=" ".join(display_name.split())[:200] or username,
        email=email,
        password_hash=hash_password(password),
    )
    session.add(user)
    session.flush()
    audit.record_as(
        session,
        actor,
        tenant_id=tenant.id,
        action="user.created",
        object_type="user",
        object_id=str(user.id),
        details={"username": username},
    )
    for role, branch_id in resolved:
        rbac.assign_role(session, tenant.id, user.id, role.id, branch_id, actor=actor)
    return user


# --- the demo tenant ---------------------------------------------------------------

DEMO_SLUG: Final = "demo"
DEMO_BRANCH_CODE: Final = "MAIN"
_DEMO_SERVICES: Final = (("A", "Accounts", 600), ("L", "Loans", 900), ("C", "Cards", None))
# Overlapping work profiles, so call-next has to choose across services.
_DEMO_COUNTERS: Final = ((1, "Counter 1", "AL"), (2, "Counter 2", "LAC"), (3, "Counter 3", "CA"))
_DEMO_PAUSE_REASONS: Final = ("Lunch", "Break", "Meeting", "Technical issue")


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """The demo tenant and its users' freshly set passwords (shown once, not stored)."""

    tenant_id: uuid.UUID
    tenant_slug: str
    branch_id: uuid.UUID
    users: dict[str, str] = field(default_factory=dict)


def _demo_password() -> str:
    while True:
        password = secrets.token_urlsafe(18)  # 144 random bits, 24 characters
        if not password.startswith("-"):  # would read as an option on a command line
            return password


def _demo_users(branch_id: uuid.UUID) -> tuple[tuple[str, str, RoleSpec], ...]:
    return (
        ("admin", "Demo Admin", (TENANT_ADMIN, None)),
        ("manager", "Demo Manager", (BRANCH_MANAGER, branch_id)),
        ("staff1", "Demo Staff 1", (STAFF, branch_id)),
        ("staff2", "Demo Staff 2", (STAFF, branch_id)),
    )


def ensure_demo(session: Session, *, actor: Actor = SYSTEM) -> DemoInfo:
    """Create the demo tenant, or complete and reuse it, and set new user passwords.

    Passwords are only ever stored hashed, so a rerun cannot show the old ones:
    it resets them (ending the users' sessions) and returns the new ones.
    """
    tenant = session.scalar(select(Tenant).where(Tenant.slug == DEMO_SLUG))
    if tenant is None:
        tenant = create_tenant(session, DEMO_SLUG, "Demo Bank", actor=actor)
    branch = session.scalar(
        select(Branch).where(Branch.tenant_id == tenant.id, Branch.code == DEMO_BRANCH_CODE)
    )
    if branch is None:
        branch = create_branch(
            session, tenant.id, "Main Street", DEMO_BRANCH_CODE, "Europe/Berlin", actor=actor
        )
    services = {
        s.code: s for s in session.scalars(select(Service).where(Service.branch_id == branch.id))
    }
    for code, name, target in _DEMO_SERVICES:
        if code not in services:
            services[code] = create_service(
                session, tenant.id, branch.id, code, name, target_wait_s=target, actor=actor
            )
    numbers = set(session.scalars(select(Counter.number).where(Counter.branch_id == branch.id)))
    for number, name, codes in _DEMO_COUNTERS:
        if number not in numbers:
            profile = [services[c].id for c in codes]
            create_counter(session, tenant.id, branch.id, number, name, profile, actor=actor)
    labels = set(
        session.scalars(select(PauseReason.label).where(PauseReason.tenant_id == tenant.id))
    )
    for label in _DEMO_PAUSE_REASONS:
        if label not in labels:
            create_pause_reason(session, tenant.id, label, actor=actor)
    passwords = {}
    for username, display_name, (role_name, branch_id) in _demo_users(branch.id):
        password = _demo_password()
        passwords[username] = password
        user = session.scalar(
            select(User).where(
                User.tenant_id == tenant.id,
                User.username_normalized == normalize_username(username),
            )
        )
        if user is None:
            create_user(
                session,
                tenant,
                username,
                password,
                display_name=display_name,
                roles=[(role_name, branch_id)],
                actor=actor,
            )
            continue
        _reset_demo_user(session, tenant.id, user, password, role_name, branch_id, actor)
    return DemoInfo(tenant.id, tenant.slug, branch.id, passwords)


def _reset_demo_user(
    session: Session,
    tenant_id: uuid.UUID,
    user: User,
    password: str,
    role_name: str,
    branch_id: uuid.UUID | None,
    actor: Actor,
) -> None:
    user.password_hash = hash_password(password)
    user.password_changed_at = utc_now()
    end_sessions(session, user)  # the old password's access and refresh tokens end with it
    user.disabled = False
    audit.record_as(
        session,
        actor,
        tenant_id=tenant_id,
        action="user.password_reset",
        object_type="user",
        object_id=str(user.id),
        details={"username": user.username},
    )
    role = rbac.role_by_name(session, tenant_id, role_name)
    if rbac.find_assignment(session, user.id, role.id, branch_id) is None:
        rbac.assign_role(session, tenant_id, user.id, role.id, branch_id, actor=actor)
