"""Refresh tokens: their form, their hash and the rotation policy."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.security.refresh import (
    DEFAULT_GRACE_S,
    RefreshDecision,
    RefreshTokenState,
    decide_refresh,
    hash_token,
    new_refresh_token,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LIVE = RefreshTokenState(
    expires_at=NOW + timedelta(days=14), family_expires_at=NOW + timedelta(days=30)
)


def decide(state: RefreshTokenState, now: datetime = NOW, grace_s: int = 30) -> RefreshDecision:
    return decide_refresh(state, now=now, grace_s=grace_s)


def test_token_form() -> None:
    token = new_refresh_token()
    assert re.fullmatch(r"qdr_[A-Za-z0-9_-]{43}", token)
    assert len({new_refresh_token() for _ in range(100)}) == 100


def test_hash_is_sha256_hex_without_the_token() -> None:
    token = new_refresh_token()
    digest = hash_token(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert token[4:] not in digest
    assert hash_token(token) == digest


def test_unused_live_token_rotates() -> None:
    assert decide(LIVE) is RefreshDecision.ROTATE


def test_revoked_token_is_refused_even_within_grace() -> None:
    state = replace(LIVE, revoked_at=NOW - timedelta(hours=1))
    assert decide(state) is RefreshDecision.REVOKED
    rotated = replace(state, rotated_at=NOW, replaced_by="next")
    assert decide(rotated) is RefreshDecision.REVOKED


def test_expired_token_is_refused() -> None:
    state = replace(LIVE, expires_at=NOW)
    assert decide(state) is RefreshDecision.EXPIRED
    assert decide(state, NOW - timedelta(microseconds=1)) is RefreshDecision.ROTATE


def test_expired_family_is_refused_even_within_grace() -> None:
    state = replace(LIVE, family_expires_at=NOW, rotated_at=NOW, replaced_by="next")
    assert decide(state) is RefreshDecision.EXPIRED


def test_replay_within_grace_window_is_the_lost_response_case() -> None:
    state = replace(LIVE, rotated_at=NOW - timedelta(seconds=5), replaced_by="next")
    assert decide(state) is RefreshDecision.GRACE_REPLAY


def test_grace_window_boundary() -> None:
    rotated_at = NOW - timedelta(seconds=30)
    state = replace(LIVE, rotated_at=rotated_at, replaced_by="next")
    assert decide(state, now=rotated_at + timedelta(seconds=30)) is RefreshDecision.GRACE_REPLAY
    just_after = rotated_at + timedelta(seconds=30, microseconds=1)
    assert decide(state, now=just_after) is RefreshDecision.REUSE_DETECTED


def test_reuse_after_grace_window_is_detected() -> None:
    state = replace(LIVE, rotated_at=NOW - timedelta(hours=2), replaced_by="next")
    assert decide(state) is RefreshDecision.REUSE_DETECTED


def test_zero_grace_treats_any_replay_as_reuse() -> None:
    state = replace(LIVE, rotated_at=NOW - timedelta(microseconds=1), replaced_by="next")
    assert decide(state, grace_s=0) is RefreshDecision.REUSE_DETECTED


def test_reuse_of_an_expired_rotated_token_still_revokes_a_live_family() -> None:
    # A stolen family lives on while the victim's old token has expired.
    state = replace(
        LIVE,
        expires_at=NOW - timedelta(days=1),
        rotated_at=NOW - timedelta(days=15),
        replaced_by="next",
    )
    assert decide(state) is RefreshDecision.REUSE_DETECTED


def test_replaced_without_rotation_time_fails_towards_revoking() -> None:
    assert decide(replace(LIVE, replaced_by="next")) is RefreshDecision.REUSE_DETECTED


def test_default_grace_is_short() -> None:
    assert 0 < DEFAULT_GRACE_S <= 60


def test_invalid_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="grace_s"):
        decide(LIVE, grace_s=-1)
    with pytest.raises(ValueError, match="timezone"):
        decide(LIVE, now=NOW.replace(tzinfo=None))
