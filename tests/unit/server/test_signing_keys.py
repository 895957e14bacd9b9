"""Signing keys: PEM and JWK forms, rotation and how long old keys are honoured."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from server.security.tokens import (
    KeyRing,
    Reason,
    TokenError,
    from_private_pem,
    generate_signing_key,
    issue_access_token,
    public_jwk,
    to_private_pem,
    verify_access_token,
)

ISSUER = "https://queuedesk.example.com"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_signing_key_repr_hides_the_private_key() -> None:
    key = generate_signing_key(NOW)
    assert "private" not in repr(key).lower()
    assert key.kid in repr(key)


@pytest.mark.parametrize("password", [None, b"correct horse"])
def test_pem_round_trip_keeps_kid_and_key(password: bytes | None) -> None:
    key = generate_signing_key(NOW)
    pem = to_private_pem(key, password)
    assert pem.startswith(b"-----BEGIN " + (b"ENCRYPTED " if password else b"") + b"PRIVATE KEY")
    loaded = from_private_pem(pem, created_at=NOW, password=password)
    assert loaded.kid == key.kid
    message = b"queue"
    loaded.public_key.verify(key.private_key.sign(message), message)


def test_pem_of_another_key_type_is_refused() -> None:
    pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="Ed25519"):
        from_private_pem(pem, created_at=NOW)


def test_public_jwk_is_an_okp_signing_key_usable_by_pyjwt() -> None:
    ring = KeyRing.generate(NOW)
    jwk = public_jwk(ring.active)
    assert jwk.keys() == {"kty", "crv", "x", "kid", "use", "alg"}
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")
    assert "d" not in jwk
    raw = base64.urlsafe_b64decode(jwk["x"] + "=")
    assert len(raw) == 32
    token, _ = issue_access_token(ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW)
    # An external client verifying from the published JWKS.
    client_key = jwt.PyJWK.from_json(json.dumps(jwk))
    decoded = jwt.decode(
        token,
        client_key,
        algorithms=["EdDSA"],
        audience="queuedesk",
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert decoded["sub"] == "u"


def test_rotation_keeps_old_tokens_valid_until_they_expire() -> None:
    ring = KeyRing.generate(NOW - timedelta(days=30))
    old_kid = ring.active.kid
    old_token, old_claims = issue_access_token(
        ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW
    )
    rotated_at = NOW + timedelta(minutes=1)
    new_key = ring.rotate(rotated_at)

    assert ring.active is new_key
    assert new_key.kid != old_kid
    assert {k["kid"] for k in ring.jwks(rotated_at)["keys"]} == {old_kid, new_key.kid}
    assert ring.keys[1].retired_at == rotated_at

    new_token, _ = issue_access_token(
        ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=rotated_at
    )
    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid
    assert verify_access_token(ring, new_token, issuer=ISSUER, now=rotated_at)

    # The old token lives out its own lifetime...
    before_expiry = datetime.fromtimestamp(old_claims["exp"] - 1, UTC)
    assert verify_access_token(ring, old_token, issuer=ISSUER, now=before_expiry)
    # ...and then fails as expired, like any other.
    with pytest.raises(TokenError) as info:
        verify_access_token(
            ring, old_token, issuer=ISSUER, now=before_expiry + timedelta(minutes=1)
        )
    assert info.value.reason is Reason.EXPIRED


def test_retired_key_is_dropped_after_the_longest_token_lifetime() -> None:
    ring = KeyRing.generate(NOW - timedelta(days=30))
    old_kid = ring.active.kid
    ring.rotate(NOW)
    retention = timedelta(seconds=900 + 120)
    assert ring.verification_key(old_kid, NOW + retention - timedelta(seconds=1)) is not None
    assert ring.verification_key(old_kid, NOW + retention) is None
    assert old_kid not in {k["kid"] for k in ring.jwks(NOW + retention)["keys"]}
    # The next rotation prunes it for good.
    ring.rotate(NOW + retention)
    assert old_kid not in {key.kid for key in ring.keys}
    assert len(ring.keys) == 2


def test_token_claiming_issue_after_key_retirement_is_refused() -> None:
    ring = KeyRing.generate(NOW - timedelta(days=30))
    old = ring.active
    ring.rotate(NOW)
    # What a leaked retired key could mint: a fresh-looking token.
    later = NOW + timedelta(minutes=5)
    token = jwt.encode(
        {
            "iss": ISSUER,
            "aud": "queuedesk",
            "sub": "u",
            "tid": "t",
            "jti": "j",
            "iat": int(later.timestamp()),
            "exp": int(later.timestamp()) + 60,
        },
        old.private_key,
        algorithm="EdDSA",
        headers={"kid": old.kid, "typ": "at+jwt"},
    )
    with pytest.raises(TokenError) as info:
        verify_access_token(ring, token, issuer=ISSUER, now=later)
    assert info.value.reason is Reason.UNKNOWN_KEY


def test_keyring_refuses_inconsistent_keys() -> None:
    active = generate_signing_key(NOW)
    unretired = generate_signing_key(NOW)
    with pytest.raises(ValueError, match="retired_at"):
        KeyRing(active, [unretired])
    with pytest.raises(ValueError, match="must not be retired"):
        KeyRing(from_private_pem(to_private_pem(active), created_at=NOW, retired_at=NOW))
    twin = from_private_pem(to_private_pem(active), created_at=NOW, retired_at=NOW)
    with pytest.raises(ValueError, match="unique"):
        KeyRing(active, [twin])


def test_keyring_restored_from_storage_verifies_old_tokens() -> None:
    ring = KeyRing.generate(NOW - timedelta(days=1))
    token, _ = issue_access_token(ring, sub="u", tid="t", roles=[], issuer=ISSUER, now=NOW)
    ring.rotate(NOW)
    stored = [(to_private_pem(k), k.created_at, k.retired_at) for k in ring.keys]
    restored = [from_private_pem(pem, created_at=c, retired_at=r) for pem, c, r in stored]
    again = KeyRing(restored[0], restored[1:])
    assert verify_access_token(again, token, issuer=ISSUER, now=NOW)["sub"] == "u"
