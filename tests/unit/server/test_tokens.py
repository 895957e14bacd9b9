"""Access tokens: the happy path and every way a forged or stale token must fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.security.tokens import (
    ALLOWED_ALGORITHMS,
    KeyRing,
    Reason,
    TokenError,
    VerifiedTokens,
    issue_access_token,
    verify_access_token,
)

ISSUER = "https://queuedesk.example.com"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T0 = int(NOW.timestamp())


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate(NOW - timedelta(days=1))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(obj: object) -> str:
    return b64url(json.dumps(obj).encode())


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": "queuedesk",
        "sub": "user-1",
        "tid": "tenant-1",
        "jti": "a" * 32,
        "iat": T0,
        "nbf": T0,
        "exp": T0 + 600,
        "roles": ["staff"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def header(ring: KeyRing, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"alg": "EdDSA", "typ": "at+jwt", "kid": ring.active.kid}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def forge(
    hdr: dict[str, Any], payload: dict[str, Any], key: Ed25519PrivateKey | None = None
) -> str:
    """A compact JWS built by hand, EdDSA-signed with ``key`` (or unsigned)."""
    signing_input = f"{segment(hdr)}.{segment(payload)}"
    signature = key.sign(signing_input.encode()) if key is not None else b""
    return f"{signing_input}.{b64url(signature)}"


def verify(ring: KeyRing, token: str, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("issuer", ISSUER)
    kwargs.setdefault("now", NOW)
    return verify_access_token(ring, token, **kwargs)


def rejected(ring: KeyRing, token: str, reason: Reason, **kwargs: Any) -> TokenError:
    with pytest.raises(TokenError) as info:
        verify(ring, token, **kwargs)
    assert info.value.reason is reason, info.value.detail
    assert str(info.value) == TokenError.public_message
    return info.value


# --- happy path -------------------------------------------------------------------


def test_issued_token_verifies_and_carries_claims(ring: KeyRing) -> None:
    token, issued = issue_access_token(
        ring, sub="u1", tid="t1", roles=["staff", "manager", "staff"], issuer=ISSUER, now=NOW
    )
    got = verify(ring, token)
    assert got == issued
    assert got["roles"] == ["manager", "staff"]
    assert got["exp"] - got["iat"] == 900
    assert got["nbf"] == got["iat"] == T0
    assert len(got["jti"]) == 32
    hdr = jwt.get_unverified_header(token)
    assert hdr == {"alg": "EdDSA", "typ": "at+jwt", "kid": ring.active.kid}


def test_each_token_gets_a_fresh_jti(ring: KeyRing) -> None:
    jtis = {
        issue_access_token(ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW)[1]["jti"]
        for _ in range(20)
    }
    assert len(jtis) == 20


def test_allowed_algorithms_are_fixed() -> None:
    assert ALLOWED_ALGORITHMS == ("EdDSA",)


def test_extra_claims_are_carried_but_cannot_override(ring: KeyRing) -> None:
    token, _ = issue_access_token(
        ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW, extra={"did": "device-9"}
    )
    assert verify(ring, token)["did"] == "device-9"
    for reserved in ("sub", "tid", "exp", "roles", "aud"):
        with pytest.raises(ValueError, match="override"):
            issue_access_token(
                ring, sub="u", tid="t", roles=[], issuer=ISSUER, extra={reserved: "x"}
            )


@pytest.mark.parametrize("ttl", [0, -1, 901, 3600, True])
def test_ttl_outside_limit_is_refused(ring: KeyRing, ttl: int) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        issue_access_token(ring, sub="u", tid="t", roles=[], issuer=ISSUER, ttl_s=ttl)


def test_empty_subject_or_tenant_is_refused(ring: KeyRing) -> None:
    with pytest.raises(ValueError, match="sub"):
        issue_access_token(ring, sub="", tid="t", roles=[], issuer=ISSUER)
    with pytest.raises(ValueError, match="tid"):
        issue_access_token(ring, sub="u", tid="", roles=[], issuer=ISSUER)


def test_hand_built_token_is_accepted(ring: KeyRing) -> None:
    # Proves the forging helper is sound, so each rejection below is due to
    # the one thing it changes.
    token = forge(header(ring), claims(), ring.active.private_key)
    assert verify(ring, token)["sub"] == "user-1"


def test_error_message_is_generic(ring: KeyRing) -> None:
    error = rejected(ring, "garbage", Reason.MALFORMED)
    assert "garbage" not in str(error)


# --- algorithm ----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_case_is_refused(ring: KeyRing, alg: str) -> None:
    rejected(ring, forge(header(ring, alg=alg), claims()), Reason.ALGORITHM)


def test_alg_none_with_valid_signature_segment_is_refused(ring: KeyRing) -> None:
    token = forge(header(ring, alg="none"), claims(), ring.active.private_key)
    rejected(ring, token, Reason.ALGORITHM)


def test_hs256_signed_with_raw_public_key_is_refused(ring: KeyRing) -> None:
    secret = ring.active.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    token = jwt.encode(
        claims(), secret, algorithm="HS256", headers={"kid": ring.active.kid, "typ": "at+jwt"}
    )
    rejected(ring, token, Reason.ALGORITHM)


def test_hs256_signed_with_public_pem_is_refused(ring: KeyRing) -> None:
    # PyJWT will not HMAC with a PEM, so the classic confusion token is built by hand.
    pem = ring.active.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{segment(header(ring, alg='HS256'))}.{segment(claims())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    rejected(ring, f"{signing_input}.{b64url(mac)}", Reason.ALGORITHM)


@pytest.mark.parametrize("alg", ["HS512", "RS256", "ES256", "PS256", "eddsa", "Ed25519", "", 1])
def test_other_algorithms_are_refused(ring: KeyRing, alg: object) -> None:
    token = forge(header(ring, alg=alg), claims(), ring.active.private_key)
    rejected(ring, token, Reason.ALGORITHM)


def test_missing_alg_is_refused(ring: KeyRing) -> None:
    hdr = header(ring)
    del hdr["alg"]
    rejected(ring, forge(hdr, claims(), ring.active.private_key), Reason.ALGORITHM)


# --- headers ------------------------------------------------------------------------


@pytest.mark.parametrize("crit", [["exp"], ["b64"], [], "b64", None])
def test_any_crit_header_is_refused(ring: KeyRing, crit: object) -> None:
    hdr = header(ring)
    hdr["crit"] = crit
    token = forge(hdr, claims(), ring.active.private_key)
    rejected(ring, token, Reason.CRITICAL_HEADER)


@pytest.mark.parametrize("typ", ["JWT", "rt+jwt", "refresh+jwt", "at+jwt ", "", 7, None])
def test_wrong_typ_is_refused(ring: KeyRing, typ: object) -> None:
    hdr = header(ring)
    if typ is None:
        del hdr["typ"]
    else:
        hdr["typ"] = typ
    rejected(ring, forge(hdr, claims(), ring.active.private_key), Reason.TYPE)


def test_full_media_type_is_accepted(ring: KeyRing) -> None:
    token = forge(header(ring, typ="application/AT+JWT"), claims(), ring.active.private_key)
    assert verify(ring, token)["sub"] == "user-1"


def test_refresh_token_presented_as_access_token_is_refused(ring: KeyRing) -> None:
    token = jwt.encode(
        {**claims(), "token_use": "refresh"},
        ring.active.private_key,
        algorithm="EdDSA",
        headers={"kid": ring.active.kid},  # PyJWT's default typ "JWT"
    )
    rejected(ring, token, Reason.TYPE)


@pytest.mark.parametrize("kid", [None, "", 42, ["x"]])
def test_missing_or_non_string_kid_is_refused(ring: KeyRing, kid: object) -> None:
    hdr = header(ring)
    if kid is None:
        del hdr["kid"]
    else:
        hdr["kid"] = kid
    rejected(ring, forge(hdr, claims(), ring.active.private_key), Reason.UNKNOWN_KEY)


def test_unknown_kid_is_refused(ring: KeyRing) -> None:
    attacker = Ed25519PrivateKey.generate()
    token = forge(header(ring, kid="attacker"), claims(), attacker)
    rejected(ring, token, Reason.UNKNOWN_KEY)


def test_embedded_jwk_is_ignored(ring: KeyRing) -> None:
    attacker = Ed25519PrivateKey.generate()
    raw = attacker.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    hdr = header(ring, jwk={"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)})
    rejected(ring, forge(hdr, claims(), attacker), Reason.SIGNATURE)


def test_known_kid_with_foreign_signature_is_refused(ring: KeyRing) -> None:
    token = forge(header(ring), claims(), Ed25519PrivateKey.generate())
    rejected(ring, token, Reason.SIGNATURE)


def test_tampered_payload_is_refused(ring: KeyRing) -> None:
    token, _ = issue_access_token(ring, sub="u", tid="t", roles=["staff"], issuer=ISSUER, now=NOW)
    head, _, sig = token.split(".")
    forged_payload = segment(claims(roles=["admin"]))
    rejected(ring, f"{head}.{forged_payload}.{sig}", Reason.SIGNATURE)


# --- malformed ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.@@@.###",
        "eyJ.eyJ.sig",
        f"{b64url(b'[1,2]')}.{segment({})}.",
        f"{b64url(b'not json')}.{segment({})}.",
        "x" * 9000 + ".a.b",
    ],
)
def test_malformed_tokens_are_refused(ring: KeyRing, token: str) -> None:
    rejected(ring, token, Reason.MALFORMED)


def test_non_string_token_is_refused(ring: KeyRing) -> None:
    rejected(ring, b"a.b.c", Reason.MALFORMED)  # type: ignore[arg-type]


def test_payload_that_is_not_json_is_refused(ring: KeyRing) -> None:
    signing_input = f"{segment(header(ring))}.{b64url(b'not json')}"
    sig = ring.active.private_key.sign(signing_input.encode())
    rejected(ring, f"{signing_input}.{b64url(sig)}", Reason.MALFORMED)


# --- claims -------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "tid", "jti", "iat", "exp"])
def test_missing_required_claim_is_refused(ring: KeyRing, claim: str) -> None:
    payload = claims()
    del payload[claim]
    token = forge(header(ring), payload, ring.active.private_key)
    error = rejected(ring, token, Reason.MISSING_CLAIM)
    assert claim in error.detail


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("sub", 5),
        ("tid", ""),
        ("tid", ["t"]),
        ("jti", 7),
        ("iat", "now"),
        ("exp", True),
        ("exp", 1.5e9),
        ("nbf", "soon"),
        ("roles", "admin"),
        ("roles", [1]),
    ],
)
def test_ill_typed_claim_is_refused(ring: KeyRing, claim: str, value: object) -> None:
    token = forge(header(ring), claims(**{claim: value}), ring.active.private_key)
    rejected(ring, token, Reason.MISSING_CLAIM)


@pytest.mark.parametrize("aud", ["other", "queuedesk2", "queue", ["queuedesk"], ["queuedesk", "x"]])
def test_wrong_audience_is_refused(ring: KeyRing, aud: object) -> None:
    token = forge(header(ring), claims(aud=aud), ring.active.private_key)
    rejected(ring, token, Reason.AUDIENCE)


def test_audience_of_the_verifier_is_honoured(ring: KeyRing) -> None:
    token, _ = issue_access_token(
        ring, sub="u", tid="t", roles=[], issuer=ISSUER, audience="kiosk", now=NOW
    )
    assert verify(ring, token, audience="kiosk")["aud"] == "kiosk"
    rejected(ring, token, Reason.AUDIENCE)


@pytest.mark.parametrize(
    "iss",
    [
        "https://queuedesk.example.co",  # prefix of the real issuer
        "queuedesk.example.com",  # substring
        "https://queuedesk.example.com/",
        "https://queuedesk.example.com.evil.test",
        "HTTPS://QUEUEDESK.EXAMPLE.COM",
        "",
        ["https://queuedesk.example.com"],
        7,
    ],
)
def test_issuer_must_match_exactly(ring: KeyRing, iss: object) -> None:
    token = forge(header(ring), claims(iss=iss), ring.active.private_key)
    rejected(ring, token, Reason.ISSUER)


def test_real_issuer_as_substring_of_expected_is_refused(ring: KeyRing) -> None:
    token = forge(header(ring), claims(iss="example"), ring.active.private_key)
    rejected(ring, token, Reason.ISSUER)


# --- time ---------------------------------------------------------------------------


def test_expiry_honours_leeway(ring: KeyRing) -> None:
    token, issued = issue_access_token(
        ring, sub="u", tid="t", roles=[], issuer=ISSUER, ttl_s=60, now=NOW
    )
    exp = datetime.fromtimestamp(issued["exp"], UTC)
    assert verify(ring, token, now=exp + timedelta(seconds=29))
    rejected(ring, token, Reason.EXPIRED, now=exp + timedelta(seconds=30))
    rejected(ring, token, Reason.EXPIRED, now=exp, leeway_s=0)
    assert verify(ring, token, now=exp - timedelta(seconds=1), leeway_s=0)


def test_long_expired_token_is_refused(ring: KeyRing) -> None:
    token, _ = issue_access_token(ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW)
    rejected(ring, token, Reason.EXPIRED, now=NOW + timedelta(days=1))


def test_not_yet_valid_token_is_refused(ring: KeyRing) -> None:
    token = forge(header(ring), claims(nbf=T0 + 120, iat=T0, exp=T0 + 600), ring.active.private_key)
    rejected(ring, token, Reason.NOT_YET_VALID)
    assert verify(ring, token, now=NOW + timedelta(seconds=91))


def test_token_issued_in_the_future_is_refused(ring: KeyRing) -> None:
    token, _ = issue_access_token(
        ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW + timedelta(minutes=5)
    )
    rejected(ring, token, Reason.NOT_YET_VALID)
    assert verify(ring, token, now=NOW + timedelta(minutes=5))


def test_lifetime_beyond_limit_is_refused(ring: KeyRing) -> None:
    token = forge(header(ring), claims(exp=T0 + 3600), ring.active.private_key)
    rejected(ring, token, Reason.LIFETIME)


def test_leeway_is_bounded(ring: KeyRing) -> None:
    token, _ = issue_access_token(ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW)
    with pytest.raises(ValueError, match="leeway"):
        verify(ring, token, leeway_s=3600)


def test_naive_now_is_an_error(ring: KeyRing) -> None:
    token, _ = issue_access_token(ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW)
    with pytest.raises(ValueError, match="timezone"):
        verify(ring, token, now=NOW.replace(tzinfo=None))


# --- revocation ---------------------------------------------------------------------


def test_revoked_jti_is_refused(ring: KeyRing) -> None:
    token, issued = issue_access_token(ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW)
    revoked = {issued["jti"]}
    rejected(ring, token, Reason.REVOKED, is_revoked=revoked.__contains__)
    assert verify(ring, token, is_revoked=lambda jti: False)


def test_revocation_is_asked_only_after_the_signature_holds(ring: KeyRing) -> None:
    asked: list[str] = []

    def is_revoked(jti: str) -> bool:
        asked.append(jti)
        return False

    forged = forge(header(ring), claims(), Ed25519PrivateKey.generate())
    rejected(ring, forged, Reason.SIGNATURE, is_revoked=is_revoked)
    assert asked == []


# --- the verified-token cache --------------------------------------------------------


def test_cache_answers_a_repeat_without_verifying_again(
    ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = VerifiedTokens()
    token, issued = issue_access_token(ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW)
    assert cache.verify(ring, token, issuer=ISSUER, now=NOW) == issued
    calls: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(args[1])
        return verify_access_token(*args, **kwargs)

    monkeypatch.setattr("server.security.tokens.verify_access_token", counted)
    assert cache.verify(ring, token, issuer=ISSUER, now=NOW + timedelta(seconds=5)) == issued
    assert calls == []


def test_cache_still_refuses_an_expired_token(ring: KeyRing) -> None:
    cache = VerifiedTokens()
    token, issued = issue_access_token(ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW)
    cache.verify(ring, token, issuer=ISSUER, now=NOW)
    later = datetime.fromtimestamp(issued["exp"], UTC) + timedelta(minutes=5)
    with pytest.raises(TokenError) as info:
        cache.verify(ring, token, issuer=ISSUER, now=later)
    assert info.value.reason is Reason.EXPIRED


def test_cache_refuses_tokens_of_a_key_past_retention(ring: KeyRing) -> None:
    cache = VerifiedTokens()
    token, _ = issue_access_token(ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW)
    cache.verify(ring, token, issuer=ISSUER, now=NOW)
    ring.rotate(NOW + timedelta(seconds=1))
    ring.rotate(NOW + timedelta(days=2))  # the first key is dropped from the ring
    with pytest.raises(TokenError) as info:
        cache.verify(ring, token, issuer=ISSUER, now=NOW + timedelta(seconds=2))
    assert info.value.reason is Reason.UNKNOWN_KEY


def test_cache_is_per_issuer_and_refuses_what_it_never_verified(ring: KeyRing) -> None:
    cache = VerifiedTokens()
    token, _ = issue_access_token(ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW)
    cache.verify(ring, token, issuer=ISSUER, now=NOW)
    with pytest.raises(TokenError) as info:
        cache.verify(ring, token, issuer="https://other.example.com", now=NOW)
    assert info.value.reason is Reason.ISSUER
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(TokenError):
        cache.verify(ring, tampered, issuer=ISSUER, now=NOW)


def test_cache_keeps_only_the_most_recent_tokens(ring: KeyRing) -> None:
    cache = VerifiedTokens(size=2)
    tokens = [
        issue_access_token(ring, sub=f"u{n}", tid="t", roles=[], issuer=ISSUER, now=NOW)[0]
        for n in range(3)
    ]
    for token in tokens:
        cache.verify(ring, token, issuer=ISSUER, now=NOW)
    assert len(cache._entries) == 2
    assert (ISSUER, tokens[0]) not in cache._entries
