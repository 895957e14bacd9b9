"""Grants: the permission codes a user holds tenant-wide and per branch, and their cache.

Checks that concern a branch pass :meth:`Grants.allows` the branch id;
tenant-level checks (managing users, tenant reports) pass none and so need a
tenant-wide grant. "Is this granted anywhere" (to show a menu) is
:meth:`Grants.allows_somewhere`; "at which branches" is :meth:`Grants.branches_for`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from server.models import Role, User, UserRole, role_permissions

_EMPTY: Final[Mapping[uuid.UUID, frozenset[str]]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Grants:
    """Permission codes granted tenant-wide and per branch; immutable."""

    tenant_wide: frozenset[str] = frozenset()
    by_branch: Mapping[uuid.UUID, frozenset[str]] = field(
        default_factory=lambda: _EMPTY, hash=False
    )

    def __post_init__(self) -> None:
        # A private read-only copy without empty entries, so equal grants compare equal.
        kept = {b: frozenset(p) for b, p in self.by_branch.items() if p}
        object.__setattr__(self, "tenant_wide", frozenset(self.tenant_wide))
        object.__setattr__(self, "by_branch", MappingProxyType(kept))

    def allows(self, permission: str, branch_id: uuid.UUID | None = None) -> bool:
        """Granted at ``branch_id``; without a branch only a tenant-wide grant counts."""
        if permission in self.tenant_wide:
            return True
        return branch_id is not None and permission in self.by_branch.get(branch_id, ())

    def allows_somewhere(self, permission: str) -> bool:
        """Granted tenant-wide or at any branch (e.g. to show a menu entry)."""
        return permission in self.tenant_wide or any(
            permission in codes for codes in self.by_branch.values()
        )

    def branches_for(self, permission: str) -> frozenset[uuid.UUID] | None:
        """The branches where ``permission`` holds; None means all of them (tenant-wide)."""
        if permission in self.tenant_wide:
            return None
        return frozenset(b for b, codes in self.by_branch.items() if permission in codes)

    def permissions(self) -> frozenset[str]:
        """Every code granted anywhere."""
        return self.tenant_wide.union(*self.by_branch.values())

    def narrowed(self, scopes: frozenset[str]) -> Grants:
        """These grants limited to ``scopes`` (an API key never exceeds its owner)."""
        return Grants(self.tenant_wide & scopes, {b: p & scopes for b, p in self.by_branch.items()})


NO_GRANTS: Final = Grants()


def load_grants(
    session: Session, user_id: uuid.UUID, *, tenant_id: uuid.UUID | None = None
) -> Grants:
    """The grants of ``user_id`` from the database; none for a disabled or unknown user."""
    user_query = select(User.tenant_id).where(User.id == user_id, User.disabled.is_(False))
    if tenant_id is not None:
        user_query = user_query.where(User.tenant_id == tenant_id)
    owner = session.scalar(user_query)
    if owner is None:
        return NO_GRANTS
    rows = session.execute(
        select(UserRole.branch_id, role_permissions.c.permission_code)
        .join(Role, Role.id == UserRole.role_id)
        .join(role_permissions, role_permissions.c.role_id == Role.id)
        # Both tenant filters: a row pointing across tenants must grant nothing.
        .where(UserRole.user_id == user_id, UserRole.tenant_id == owner, Role.tenant_id == owner)
    )
    tenant_wide: set[str] = set()
    by_branch: dict[uuid.UUID, set[str]] = {}
    for branch_id, code in rows:
        (tenant_wide if branch_id is None else by_branch.setdefault(branch_id, set())).add(code)
    return Grants(frozenset(tenant_wide), {b: frozenset(c) for b, c in by_branch.items()})


class GrantCache:
    """Grants per (tenant, user), kept for ``ttl_s`` seconds.

    Role changes made through this module invalidate the entries of this
    process at once and again after their commit. Other server processes
    cannot be told, so entries expire after a short TTL: a revoked permission
    keeps working at most that long on another replica.
    """

    def __init__(
        self,
        ttl_s: float = 10.0,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[uuid.UUID, uuid.UUID], tuple[float, Grants]] = {}
        # Bumped by every invalidation: a load that started before one is not stored,
        # since it may have read the rows that were just changed.
        self._generation = 0

    def get(self, session: Session, tenant_id: uuid.UUID, user_id: uuid.UUID) -> Grants:
        key = (tenant_id, user_id)
        with self._lock:
            now = self._clock()
            cached = self._entries.get(key)
            if cached is not None and cached[0] > now:
                return cached[1]
            generation = self._generation
        grants = load_grants(session, user_id, tenant_id=tenant_id)
        with self._lock:
            if generation == self._generation:
                if len(self._entries) >= self.max_entries:
                    self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                    if len(self._entries) >= self.max_entries:
                        self._entries.clear()
                self._entries[key] = (self._clock() + self.ttl_s, grants)
        return grants

    def invalidate_tenant(self, tenant_id: uuid.UUID) -> None:
        with self._lock:
            self._generation += 1
            self._entries = {k: v for k, v in self._entries.items() if k[0] != tenant_id}

    def invalidate_user(self, user_id: uuid.UUID) -> None:
        with self._lock:
            self._generation += 1
            self._entries = {k: v for k, v in self._entries.items() if k[1] != user_id}

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


grant_cache: Final = GrantCache()

_PENDING_KEY: Final = "queuedesk.grant_invalidations"


def invalidate_on_commit(
    session: Session, *, tenant_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None
) -> None:
    """Drop cached grants now and once more when ``session`` commits.

    The second time matters: between now and the commit another request may
    load the old rows and cache them.
    """
    for invalidate, key in (
        (grant_cache.invalidate_tenant, tenant_id),
        (grant_cache.invalidate_user, user_id),
    ):
        if key is not None:
            invalidate(key)
    pending: list[tuple[uuid.UUID | None, uuid.UUID | None]] | None = session.info.get(_PENDING_KEY)
    if pending is None:
        pending = session.info[_PENDING_KEY] = []

        @event.listens_for(session, "after_commit")
        def _after_commit(committed: Session) -> None:
            for tid, uid in committed.info.get(_PENDING_KEY, ()):
                if tid is not None:
                    grant_cache.invalidate_tenant(tid)
                if uid is not None:
                    grant_cache.invalidate_user(uid)
            committed.info[_PENDING_KEY].clear()

        @event.listens_for(session, "after_rollback")
        def _after_rollback(rolled_back: Session) -> None:
            rolled_back.info[_PENDING_KEY].clear()

    pending.append((tenant_id, user_id))
