"""Signing keys for access tokens: Ed25519 key pairs, their PEM and JWK forms, the key ring.

The ring holds the active key and the retired keys whose tokens may still be
live; its public half is the JSON Web Key Set clients fetch.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from server.security._clock import require_aware, utc_now

MAX_ACCESS_TTL_S: Final = 900
# The largest clock leeway a verifier may allow; a retired key outlives its
# last token by this much.
MAX_LEEWAY_S: Final = 120


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One Ed25519 key pair; ``retired_at`` is set once a newer key signs."""

    kid: str
    private_key: Ed25519PrivateKey = field(repr=False)
    public_key: Ed25519PublicKey = field(repr=False)
    created_at: datetime
    retired_at: datetime | None = None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_x(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _b64url(raw)


def _thumbprint(public_key: Ed25519PublicKey) -> str:
    # RFC 7638 JWK thumbprint: the kid follows from the key, so a key restored
    # from its PEM gets back the same kid.
    members = {"crv": "Ed25519", "kty": "OKP", "x": _public_x(public_key)}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def _key_from_private(
    private_key: Ed25519PrivateKey, created_at: datetime, retired_at: datetime | None
) -> SigningKey:
    public_key = private_key.public_key()
    return SigningKey(
        kid=_thumbprint(public_key),
        private_key=private_key,
        public_key=public_key,
        created_at=require_aware(created_at, "created_at"),
        retired_at=None if retired_at is None else require_aware(retired_at, "retired_at"),
    )


def generate_signing_key(now: datetime | None = None) -> SigningKey:
    """A fresh Ed25519 key whose kid is its RFC 7638 thumbprint."""
    return _key_from_private(Ed25519PrivateKey.generate(), now or utc_now(), None)


def to_private_pem(key: SigningKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM of the private key, encrypted when a password is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def from_private_pem(
    pem: bytes,
    *,
    created_at: datetime,
    retired_at: datetime | None = None,
    password: bytes | None = None,
) -> SigningKey:
    """Load a key written by :func:`to_private_pem`; refuses anything but Ed25519."""
    private_key = serialization.load_pem_private_key(pem, password=password)
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ValueError("signing key must be an Ed25519 private key")
    return _key_from_private(private_key, created_at, retired_at)


def public_jwk(key: SigningKey) -> dict[str, str]:
    """The public half as a JWK (RFC 8037 OKP)."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _public_x(key.public_key),
        "kid": key.kid,
        "use": "sig",
        "alg": "EdDSA",
    }


class KeyRing:
    """The active signing key and the retired keys whose tokens may still be live.

    A retired key stays for ``max_token_lifetime`` plus the largest clock
    leeway after its retirement: every token it signed has expired by then.
    The keys are held in one tuple replaced as a whole, so a reader on another
    thread never sees a half-done rotation.
    """

    def __init__(
        self,
        active: SigningKey,
        retired: Iterable[SigningKey] = (),
        *,
        max_token_lifetime: timedelta = timedelta(seconds=MAX_ACCESS_TTL_S),
    ) -> None:
        retired = tuple(retired)
        if active.retired_at is not None:
            raise ValueError("the active key must not be retired")
        if any(key.retired_at is None for key in retired):
            raise ValueError("every older key needs retired_at")
        kids = [active.kid, *(key.kid for key in retired)]
        if len(set(kids)) != len(kids):
            raise ValueError("kids must be unique")
        self._retention = max_token_lifetime + timedelta(seconds=MAX_LEEWAY_S)
        self._keys: tuple[SigningKey, ...] = (active, *retired)

    @classmethod
    def generate(
        cls,
        now: datetime | None = None,
        *,
        max_token_lifetime: timedelta = timedelta(seconds=MAX_ACCESS_TTL_S),
    ) -> KeyRing:
        """A ring with one freshly generated active key."""
        return cls(generate_signing_key(now), max_token_lifetime=max_token_lifetime)

    @property
    def active(self) -> SigningKey:
        return self._keys[0]

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """All keys held, active first (for persisting the ring)."""
        return self._keys

    def _retained(self, key: SigningKey, now: datetime) -> bool:
        return key.retired_at is None or now < key.retired_at + self._retention

    def rotate(self, now: datetime | None = None) -> SigningKey:
        """Make a new active key, retire the old one and drop expired ones."""
        now = require_aware(now or utc_now(), "now")
        new = generate_signing_key(now)
        old = replace(self._keys[0], retired_at=now)
        older = tuple(key for key in self._keys[1:] if self._retained(key, now))
        self._keys = (new, old, *older)
        return new

    def verification_key(self, kid: str, now: datetime | None = None) -> SigningKey | None:
        """The key with this kid if it may still verify tokens, else None."""
        now = require_aware(now or utc_now(), "now")
        for key in self._keys:
            if key.kid == kid:
                return key if self._retained(key, now) else None
        return None

    def jwks(self, now: datetime | None = None) -> dict[str, list[dict[str, str]]]:
        """The JSON Web Key Set served at ``/.well-known/jwks.json``."""
        now = require_aware(now or utc_now(), "now")
        return {"keys": [public_jwk(k) for k in self._keys if self._retained(k, now)]}
