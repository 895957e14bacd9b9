"""Signing in and out: password login, refresh-token rotation, logout, password change.

Failures raise :class:`AuthRefused` *after* recording what must outlive the
refused request (the throttle count, the audit row, a revoked token family):
the caller commits and then answers. Every login failure looks the same from
outside, whatever its cause; the cause is in the audit log only.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Select, delete, select, text, update
from sqlalchemy.orm import Session

from server.config import Settings
from server.models import Device, LoginThrottle, RefreshToken, RevokedToken, Tenant, User
from server.models.identity import normalize_username
from server.security._clock import require_aware, utc_now
from server.security.passwords import (
    hash_password,
    needs_rehash,
    validate_new_password,
    verify_dummy,
    verify_password,
)
from server.security.refresh import (
    REFRESH_TOKEN_PREFIX,
    RefreshDecision,
    RefreshTokenState,
    decide_refresh,
    hash_token,
    new_refresh_token,
)
from server.security.signing_keys import MAX_ACCESS_TTL_S, KeyRing
from server.security.throttle import ThrottleState, check, register_failure, throttle_key
from server.security.tokens import issue_access_token
from server.services import audit
from server.services.rbac import Grants, grant_cache

__all__ = [
    "AuthRefused",
    "IssuedTokens",
    "change_password",
    "end_sessions",
    "login",
    "logout",
    "refresh",
    "revoke_families",
]

# Far longer than any real refresh token; bounds work on garbage input.
_MAX_REFRESH_TOKEN_CHARS: Final = 256
_UNKNOWN_SOURCE: Final = "unknown"


class AuthRefused(Exception):  # noqa: N818 - reads as what happened
    """A login, refresh or password change was refused.

    ``kind`` is "credentials", "throttled" or "refresh"; ``retry_after`` is the
    wait in seconds for "throttled".
    """

    def __init__(self, kind: str, retry_after: int | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A new access token and refresh token, and whom they are for."""

    access_token: str
    expires_in: int
    refresh_token: str
    user: User
    tenant: Tenant
    grants: Grants


def _locked(session: Session, query: Select[Any]) -> RefreshToken | None:
    """The one refresh-token row ``query`` finds, locked against concurrent refreshes.

    FOR UPDATE serialises them on PostgreSQL; SQLite's BEGIN IMMEDIATE already
    serialises every writer.
    """
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    row: RefreshToken | None = session.scalar(query)
    return row


def _issue(
    session: Session,
    keyring: KeyRing,
    settings: Settings,
    user: User,
    tenant: Tenant,
    *,
    family_id: uuid.UUID,
    family_expires_at: datetime,
    device_id: uuid.UUID | None,
    actor: audit.Actor,
    now: datetime,
) -> tuple[IssuedTokens, RefreshToken]:
    ttl = min(settings.access_token_ttl_s, MAX_ACCESS_TTL_S)
    roles = {assignment.role.name for assignment in user.role_assignments}
    access_token, _claims = issue_access_token(
        keyring,
        sub=str(user.id),
        tid=str(tenant.id),
        roles=roles,
        issuer=settings.jwt_issuer,
        ttl_s=ttl,
        now=now,
        # "did": the device signed in on, so the sync endpoints refuse a revoked one's tokens.
        extra={"ver": user.token_version, **({"did": str(device_id)} if device_id else {})},
    )
    plaintext = new_refresh_token()
    row = RefreshToken(
        id=uuid.uuid4(),
        tenant_id=tenant.id,
        user_id=user.id,
        family_id=family_id,
        token_hash=hash_token(plaintext),
        created_at=now,
        expires_at=min(now + timedelta(seconds=settings.refresh_token_ttl_s), family_expires_at),
        family_expires_at=family_expires_at,
        device_id=device_id,
        user_agent=actor.user_agent,
        ip=(actor.source_ip or "")[:45] or None,
    )
    session.add(row)
    session.flush()
    tokens = IssuedTokens(
        access_token=access_token,
        expires_in=ttl,
        refresh_token=plaintext,
        user=user,
        tenant=tenant,
        grants=grant_cache.get(session, tenant.id, user.id),
    )
    return tokens, row


def _lock_throttle(session: Session, key: str) -> None:
    """Serialise attempts on one throttle key until the transaction ends.

    Two concurrent first failures would otherwise both insert its row and one
    would fail on the primary key. SQLite needs nothing: every write transaction
    begins with BEGIN IMMEDIATE, which serialises all writers.
    """
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(b"queuedesk.login_throttle:" + key.encode()).digest()
        lock = int.from_bytes(digest[:8], "big", signed=True)  # advisory keys are bigint
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})


def _known_device(
    session: Session, tenant_id: uuid.UUID, device_id: uuid.UUID | None
) -> uuid.UUID | None:
    if device_id is None:
        return None
    device = session.get(Device, device_id)
    ok = device is not None and device.tenant_id == tenant_id and device.revoked_at is None
    return device_id if ok else None


def login(
    session: Session,
    keyring: KeyRing,
    settings: Settings,
    *,
    tenant: str,
    username: str,
    password: str,
    device_id: uuid.UUID | None = None,
    actor: audit.Actor = audit.SYSTEM,
    now: datetime | None = None,
) -> IssuedTokens:
    """Check the password and start a new token family; raise :class:`AuthRefused`.

    An unknown tenant, an unknown or disabled user and a wrong password all
    cost one password verification and fail alike. Attempts are throttled per
    (tenant, username, source address).
    """
    now = require_aware(now or utc_now(), "now")
    # The same normalised names for the throttle key as for the lookup, so
    # " ACME" cannot be a fresh throttle key for the account "acme".
    slug, normalized = tenant.strip().lower(), normalize_username(username)
    key = throttle_key(
        tenant=slug, username=normalized, source_ip=actor.source_ip or _UNKNOWN_SOURCE
    )
    _lock_throttle(session, key)
    throttle = session.get(LoginThrottle, key)
    state = ThrottleState()
    if throttle is not None:
        state = ThrottleState(
            throttle.failures,
            throttle.first_failure_at,
            throttle.last_failure_at,
            throttle.locked_until,
        )
    tenant_row = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant_row is not None and tenant_row.disabled:
        tenant_row = None
    user = (
        session.scalar(
            select(User).where(
                User.tenant_id == tenant_row.id,
                User.username_normalized == normalized,
            )
        )
        if tenant_row is not None
        else None
    )

    def audit_login(result: str, reason: str | None) -> None:
        if tenant_row is None:
            return  # no tenant to file it under
        audit.record_as(
            session,
            actor
            if user is None
            else audit.Actor("user", str(user.id), actor.source_ip, actor.user_agent),
            tenant_id=tenant_row.id,
            action="auth.login",
            result=result,
            reason=reason,
            object_type="user",
            object_id=str(user.id) if user is not None else None,
            details={"username": username[:150]},
        )

    retry_after = check(state, now)
    if retry_after is not None:
        audit_login("denied", "throttled")
        raise AuthRefused("throttled", retry_after)

    verified: bool
    if user is None:
        verified, reason = (
            verify_dummy(password),
            "unknown user" if tenant_row else "unknown tenant",
        )
    else:
        verified, reason = verify_password(user.password_hash, password), "wrong password"
        if user.disabled:
            verified, reason = False, "disabled user"
    if not verified or user is None or tenant_row is None:
        state = register_failure(state, now)
        if throttle is None:
            throttle = LoginThrottle(key=key)
            session.add(throttle)
        throttle.failures = state.failures
        throttle.first_failure_at = state.first_failure_at
        throttle.last_failure_at = state.last_failure_at
        throttle.locked_until = state.locked_until
        audit_login("failure", reason)
        raise AuthRefused("credentials")

    if throttle is not None:
        session.delete(throttle)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    tokens, _row = _issue(
        session,
        keyring,
        settings,
        user,
        tenant_row,
        family_id=uuid.uuid4(),
        family_expires_at=now + timedelta(seconds=settings.refresh_token_ttl_s),
        device_id=_known_device(session, tenant_row.id, device_id),
        actor=actor,
        now=now,
    )
    audit_login("success", None)
    return tokens


def revoke_families(
    session: Session,
    *,
    user_id: uuid.UUID,
    family_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> int:
    """Revoke one refresh family of a user, or all of them; returns the rows touched."""
    now = require_aware(now or utc_now(), "now")
    statement = update(RefreshToken).where(
        RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
    )
    if family_id is not None:
        statement = statement.where(RefreshToken.family_id == family_id)
    result = session.execute(
        statement.values(revoked_at=now).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def end_sessions(session: Session, user: User, *, now: datetime | None = None) -> None:
    """End every session of ``user``: access tokens (token_version) and refresh families.

    Whoever disables a user or resets a password calls this.
    """
    user.token_version += 1
    revoke_families(session, user_id=user.id, now=now)
    grant_cache.invalidate_user(user.id)


def refresh(
    session: Session,
    keyring: KeyRing,
    settings: Settings,
    *,
    refresh_token: str,
    actor: audit.Actor = audit.SYSTEM,
    now: datetime | None = None,
) -> IssuedTokens:
    """Rotate a refresh token within its family; raise :class:`AuthRefused`."""
    now = require_aware(now or utc_now(), "now")
    if (
        not refresh_token.startswith(REFRESH_TOKEN_PREFIX)
        or len(refresh_token) > _MAX_REFRESH_TOKEN_CHARS
    ):
        raise AuthRefused("refresh")
    query = select(RefreshToken).where(RefreshToken.token_hash == hash_token(refresh_token))
    row = _locked(session, query)
    if row is None:
        raise AuthRefused("refresh")
    decision = decide_refresh(
        RefreshTokenState(
            expires_at=row.expires_at,
            family_expires_at=row.family_expires_at,
            rotated_at=row.rotated_at,
            replaced_by=str(row.replaced_by_id) if row.replaced_by_id else None,
            revoked_at=row.revoked_at,
        ),
        now=now,
        grace_s=settings.refresh_grace_s,
    )
    if decision is RefreshDecision.REUSE_DETECTED:
        revoke_families(session, user_id=row.user_id, family_id=row.family_id, now=now)
        audit.record_as(
            session,
            actor,
            tenant_id=row.tenant_id,
            action="auth.refresh_reuse",
            result="denied",
            reason="a rotated refresh token was presented again; its family is revoked",
            object_type="user",
            object_id=str(row.user_id),
            details={"family_id": str(row.family_id)},
        )
        raise AuthRefused("refresh")
    if decision not in (RefreshDecision.ROTATE, RefreshDecision.GRACE_REPLAY):
        raise AuthRefused("refresh")

    user, tenant = session.get(User, row.user_id), session.get(Tenant, row.tenant_id)
    if (
        user is None
        or tenant is None
        or user.disabled
        or tenant.disabled
        or user.tenant_id != tenant.id
    ):
        revoke_families(session, user_id=row.user_id, family_id=row.family_id, now=now)
        raise AuthRefused("refresh")

    predecessor = row
    if decision is RefreshDecision.GRACE_REPLAY:
        # The client lost the answer to its last refresh: continue from the
        # family's current head, which it never received, and revoke nothing.
        head = _locked(
            session,
            select(RefreshToken)
            .where(
                RefreshToken.family_id == row.family_id,
                RefreshToken.rotated_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
            .order_by(RefreshToken.created_at.desc())
            .limit(1),
        )
        if head is None or head.expires_at <= now:
            raise AuthRefused("refresh")
        predecessor = head

    tokens, new_row = _issue(
        session,
        keyring,
        settings,
        user,
        tenant,
        family_id=row.family_id,
        family_expires_at=row.family_expires_at,
        device_id=predecessor.device_id,
        actor=actor,
        now=now,
    )
    predecessor.rotated_at = now
    predecessor.replaced_by_id = new_row.id
    return tokens


def logout(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    jti: str | None,
    token_expires_at: datetime | None,
    refresh_token: str | None = None,
    actor: audit.Actor = audit.SYSTEM,
    now: datetime | None = None,
) -> None:
    """End the calling access token and one refresh family (or all of the user's)."""
    now = require_aware(now or utc_now(), "now")
    if jti is not None and token_expires_at is not None:
        session.add(RevokedToken(jti=jti, tenant_id=tenant_id, expires_at=token_expires_at))
    # Revocations of tokens that have expired anyway are dead weight.
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now - timedelta(hours=1)))
    family_id: uuid.UUID | None = None
    if refresh_token:
        row = session.scalar(
            select(RefreshToken).where(
                RefreshToken.token_hash == hash_token(refresh_token[:_MAX_REFRESH_TOKEN_CHARS])
            )
        )
        # Someone else's token is ignored rather than revoked, and then all of ours go.
        if row is not None and row.user_id == user_id and row.tenant_id == tenant_id:
            family_id = row.family_id
    revoke_families(session, user_id=user_id, family_id=family_id, now=now)
    audit.record_as(
        session,
        actor,
        tenant_id=tenant_id,
        action="auth.logout",
        object_type="user",
        object_id=str(user_id),
        details={"scope": "one session" if family_id else "all sessions"},
    )


def change_password(
    session: Session,
    user: User,
    *,
    old_password: str,
    new_password: str,
    actor: audit.Actor = audit.SYSTEM,
    now: datetime | None = None,
) -> None:
    """Change ``user``'s own password and end all their sessions.

    Raises :class:`AuthRefused` ("credentials") for a wrong current password
    and :class:`~server.security.passwords.PasswordPolicyError` for a weak new one.
    """
    now = require_aware(now or utc_now(), "now")
    if not verify_password(user.password_hash, old_password):
        audit.record_as(
            session,
            actor,
            tenant_id=user.tenant_id,
            action="auth.password_change",
            result="failure",
            reason="wrong current password",
            object_type="user",
            object_id=str(user.id),
        )
        raise AuthRefused("credentials")
    validate_new_password(new_password)
    user.password_hash = hash_password(new_password)
    user.password_changed_at = now
    end_sessions(session, user, now=now)
    audit.record_as(
        session,
        actor,
        tenant_id=user.tenant_id,
        action="auth.password_change",
        object_type="user",
        object_id=str(user.id),
    )
