"""Opaque refresh tokens and the rotation policy applied when one is presented.

Every refresh returns a new refresh token and marks the presented one rotated;
the tokens issued from one login form a *family*. Presenting a token that was
already rotated normally means two parties hold it, so the whole family is
revoked (reuse detection).

Grace window, a deliberate exception: a client can send a refresh, have the
server rotate the token, and lose the response (flaky branch link, a proxy
timeout). It then retries with the token it already used. Treating that retry
as theft would sign staff out whenever the network hiccups, so a token rotated
no more than ``grace_s`` seconds ago answers ``GRACE_REPLAY``: the caller
continues the family from its current head (only hashes are stored, so it
issues a fresh successor of the head rather than resending the head itself)
and revokes nothing. The window is short; if a thief was the one replaying,
the legitimate holder's next refresh presents an already rotated token after
the window and the family is revoked then.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from server.security._clock import require_aware

REFRESH_TOKEN_PREFIX: Final = "qdr_"  # noqa: S105 (a prefix, not a secret)
DEFAULT_GRACE_S: Final = 30


def new_refresh_token() -> str:
    """A new opaque refresh token: ``qdr_`` and 256 random bits (43 base64url chars)."""
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex of a token, the only form that is stored.

    A slow hash guards low-entropy secrets (passwords) against guessing; these
    tokens carry 256 random bits, so guessing is hopeless and a fast hash is
    enough. It also lets the token be found by an indexed equality lookup.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class RefreshDecision(StrEnum):
    """What to do with a presented refresh token that was found."""

    ROTATE = "rotate"
    GRACE_REPLAY = "grace_replay"
    REUSE_DETECTED = "reuse_detected"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class RefreshTokenState:
    """The stored facts about one refresh token (all times aware UTC)."""

    expires_at: datetime
    family_expires_at: datetime
    rotated_at: datetime | None = None
    replaced_by: str | None = None
    revoked_at: datetime | None = None


def decide_refresh(
    state: RefreshTokenState, *, now: datetime, grace_s: int = DEFAULT_GRACE_S
) -> RefreshDecision:
    """Apply the rotation policy to a presented token.

    Order matters: a revoked or dead family stays dead; reuse is judged before
    the token's own expiry, because an old rotated token showing up while its
    family lives on is exactly the theft signal, expired or not.
    """
    if grace_s < 0:
        raise ValueError("grace_s must not be negative")
    now = require_aware(now, "now")
    if state.revoked_at is not None:
        return RefreshDecision.REVOKED
    if now >= require_aware(state.family_expires_at, "family_expires_at"):
        return RefreshDecision.EXPIRED
    if state.rotated_at is not None:
        rotated_at = require_aware(state.rotated_at, "rotated_at")
        if now - rotated_at <= timedelta(seconds=grace_s):
            return RefreshDecision.GRACE_REPLAY
        return RefreshDecision.REUSE_DETECTED
    if state.replaced_by is not None:
        # Replaced without a rotation time: the record is inconsistent, so no
        # grace can be proven. Fail towards revoking.
        return RefreshDecision.REUSE_DETECTED
    if now >= require_aware(state.expires_at, "expires_at"):
        return RefreshDecision.EXPIRED
    return RefreshDecision.ROTATE
