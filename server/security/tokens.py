"""Access tokens: EdDSA (Ed25519) JWTs signed by the key ring's active key.

The accepted algorithms are fixed here, never read from a token (RFC 8725 §2.1).
The verification key is chosen by ``kid`` only after the header's ``alg`` has
been found in that fixed list, and the signature is checked before any claim is
trusted. Time checks use an injectable clock so they are testable.
"""

from __future__ import annotations

import base64
import json
import string
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from server.security._clock import require_aware, utc_now
from server.security.signing_keys import (
    MAX_ACCESS_TTL_S,
    MAX_LEEWAY_S,
    KeyRing,
    SigningKey,
    from_private_pem,
    generate_signing_key,
    public_jwk,
    to_private_pem,
)

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ALLOWED_ALGORITHMS",
    "DEFAULT_AUDIENCE",
    "DEFAULT_LEEWAY_S",
    "MAX_ACCESS_TTL_S",
    "MAX_LEEWAY_S",
    "KeyRing",
    "Reason",
    "SigningKey",
    "TokenError",
    "VerifiedTokens",
    "from_private_pem",
    "generate_signing_key",
    "issue_access_token",
    "public_jwk",
    "to_private_pem",
    "verify_access_token",
]

ALLOWED_ALGORITHMS: Final = ("EdDSA",)
ACCESS_TOKEN_TYPE: Final = "at+jwt"  # noqa: S105 (a media type, not a secret)
# RFC 9068 §4: "at+jwt" or its full media type; media types ignore case.
_ACCEPTED_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})
DEFAULT_AUDIENCE: Final = "queuedesk"
DEFAULT_LEEWAY_S: Final = 30
# Far above any token we issue; bounds the work done on unauthenticated input.
MAX_TOKEN_CHARS: Final = 8192
REQUIRED_CLAIMS: Final = ("iss", "aud", "sub", "tid", "jti", "iat", "exp")
_RESERVED_CLAIMS: Final = frozenset({*REQUIRED_CLAIMS, "nbf", "roles"})
_B64URL: Final = frozenset(string.ascii_letters + string.digits + "-_")


class Reason(StrEnum):
    """Why a token was refused: for logs and tests, never for the client."""

    MALFORMED = "malformed"
    ALGORITHM = "algorithm not allowed"
    CRITICAL_HEADER = "critical header present"
    TYPE = "wrong token type"
    UNKNOWN_KEY = "unknown or missing kid"
    SIGNATURE = "bad signature"
    MISSING_CLAIM = "missing or invalid claim"
    AUDIENCE = "wrong audience"
    ISSUER = "wrong issuer"
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"
    LIFETIME = "lifetime too long"
    REVOKED = "revoked"


class TokenError(Exception):
    """An access token was refused.

    ``str(error)`` is the same for every cause and safe to send to a client;
    ``reason`` and ``detail`` say what went wrong, for the logs.
    """

    public_message: Final = "invalid or expired access token"

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(self.public_message)
        self.reason = reason
        self.detail = detail


def issue_access_token(
    keyring: KeyRing,
    *,
    sub: str,
    tid: str,
    roles: Iterable[str],
    issuer: str,
    audience: str = DEFAULT_AUDIENCE,
    ttl_s: int = MAX_ACCESS_TTL_S,
    now: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Sign an access token with the active key; returns ``(token, claims)``."""
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 0 < ttl_s <= MAX_ACCESS_TTL_S:
        raise ValueError(f"ttl_s must be an integer in 1..{MAX_ACCESS_TTL_S}")
    for name, value in (("sub", sub), ("tid", tid), ("issuer", issuer), ("audience", audience)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    extra = dict(extra or {})
    if clash := _RESERVED_CLAIMS & extra.keys():
        raise ValueError(f"extra claims may not override {sorted(clash)}")
    issued = int(require_aware(now or utc_now(), "now").timestamp())
    claims: dict[str, Any] = {
        **extra,
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        "tid": tid,
        "jti": uuid.uuid4().hex,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_s,
        "roles": sorted(set(roles)),
    }
    key = keyring.active
    token = jwt.encode(
        claims,
        key.private_key,
        algorithm=ALLOWED_ALGORITHMS[0],
        headers={"kid": key.kid, "typ": ACCESS_TOKEN_TYPE},
    )
    return token, claims


def _read_header(token: object) -> dict[str, Any]:
    """Decode the (still untrusted) header ourselves, so our checks come first."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise TokenError(Reason.MALFORMED, "not a compact JWS")
    segment = token.split(".", 1)[0]
    if not segment or not _B64URL.issuperset(segment):
        raise TokenError(Reason.MALFORMED, "header is not base64url")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError) as exc:
        raise TokenError(Reason.MALFORMED, f"header: {exc}") from None
    if not isinstance(header, dict):
        raise TokenError(Reason.MALFORMED, "header is not a JSON object")
    return header


def _check_header(header: Mapping[str, Any]) -> str:
    """Check alg, crit and typ; return the kid."""
    alg = header.get("alg")
    # Exact, case-sensitive membership: "none", "None", "HS256"... all fail here.
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise TokenError(Reason.ALGORITHM, f"alg {alg!r}")
    if "crit" in header:
        # We implement no JWS extensions, so any critical one must be refused
        # (RFC 7515 §4.1.11), an empty or malformed list included.
        raise TokenError(Reason.CRITICAL_HEADER, f"crit {header['crit']!r}")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
        raise TokenError(Reason.TYPE, f"typ {typ!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError(Reason.UNKNOWN_KEY, "kid missing")
    return kid


def _decode(token: str, key: SigningKey, *, issuer: str, audience: str) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key=key.public_key,
            algorithms=list(ALLOWED_ALGORITHMS),
            audience=audience,
            issuer=issuer,
            options={
                "require": list(REQUIRED_CLAIMS),
                "strict_aud": True,
                # Time claims are checked below against the injected clock.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise TokenError(Reason.SIGNATURE) from None
    except jwt.InvalidAlgorithmError:
        raise TokenError(Reason.ALGORITHM) from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(Reason.MISSING_CLAIM, exc.claim) from None
    except (InvalidSubjectError, InvalidJTIError) as exc:
        raise TokenError(Reason.MISSING_CLAIM, str(exc)) from None
    except jwt.InvalidAudienceError as exc:
        raise TokenError(Reason.AUDIENCE, str(exc)) from None
    except jwt.InvalidIssuerError as exc:
        raise TokenError(Reason.ISSUER, str(exc)) from None
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:
        raise TokenError(Reason.MALFORMED, str(exc)) from None
    return payload


def _numeric_date(claims: Mapping[str, Any], name: str) -> int:
    value = claims[name]
    # bool is an int in Python; a "true" expiry is not a date.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TokenError(Reason.MISSING_CLAIM, f"{name} is not an integer")
    return value


def _check_claims(
    claims: Mapping[str, Any],
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    now: float,
    leeway: int,
) -> None:
    # PyJWT already compared these; compared again so that a change in the
    # library can never turn them into prefix or membership tests.
    if claims["iss"] != issuer:
        raise TokenError(Reason.ISSUER, "iss differs")
    if claims["aud"] != audience:
        raise TokenError(Reason.AUDIENCE, "aud differs")
    for name in ("sub", "tid", "jti"):
        if not isinstance(claims[name], str) or not claims[name]:
            raise TokenError(Reason.MISSING_CLAIM, f"{name} is not a non-empty string")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokenError(Reason.MISSING_CLAIM, "roles is not a list of strings")
    iat, exp = _numeric_date(claims, "iat"), _numeric_date(claims, "exp")
    if exp <= now - leeway:
        raise TokenError(Reason.EXPIRED)
    if iat > now + leeway:
        raise TokenError(Reason.NOT_YET_VALID, "iat in the future")
    if "nbf" in claims and _numeric_date(claims, "nbf") > now + leeway:
        raise TokenError(Reason.NOT_YET_VALID, "nbf in the future")
    if exp - iat > MAX_ACCESS_TTL_S:
        raise TokenError(Reason.LIFETIME, f"exp - iat = {exp - iat}")
    # A retired key signs nothing new: a token it "issued" later means the key leaked.
    if key.retired_at is not None and iat > key.retired_at.timestamp() + leeway:
        raise TokenError(Reason.UNKNOWN_KEY, "issued after its key was retired")


def verify_access_token(
    keyring: KeyRing,
    token: str,
    *,
    issuer: str,
    audience: str = DEFAULT_AUDIENCE,
    leeway_s: int = DEFAULT_LEEWAY_S,
    now: datetime | None = None,
    is_revoked: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Return the claims of a valid access token or raise :class:`TokenError`.

    ``is_revoked(jti)`` is asked only once the signature and claims hold, so an
    unauthenticated caller cannot make us look anything up.
    """
    if not 0 <= leeway_s <= MAX_LEEWAY_S:
        raise ValueError(f"leeway_s must be within 0..{MAX_LEEWAY_S}")
    now_dt = require_aware(now or utc_now(), "now")
    kid = _check_header(_read_header(token))
    key = keyring.verification_key(kid, now_dt)
    if key is None:
        raise TokenError(Reason.UNKNOWN_KEY, f"kid {kid!r}")
    claims = _decode(token, key, issuer=issuer, audience=audience)
    _check_claims(
        claims, key, issuer=issuer, audience=audience, now=now_dt.timestamp(), leeway=leeway_s
    )
    if is_revoked is not None and is_revoked(claims["jti"]):
        raise TokenError(Reason.REVOKED, f"jti {claims['jti']}")
    return claims


class VerifiedTokens:
    """Access tokens already verified, so a client's next request skips the signature check.

    Keyed by the exact token text and issuer: a hit is the same bytes whose
    signature and claims held before. What can change since is re-checked on
    every hit: the expiry, and that the signing key may still verify (a key past
    its retention drops its tokens). Revocation is the caller's, as with
    :func:`verify_access_token`. Bounded (least recently used go first) and
    thread-safe.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, str], tuple[dict[str, Any], str]] = OrderedDict()
        self._lock = threading.Lock()

    def verify(
        self, keyring: KeyRing, token: str, *, issuer: str, now: datetime | None = None
    ) -> dict[str, Any]:
        """The claims of a valid access token, as :func:`verify_access_token`."""
        now_dt = require_aware(now or utc_now(), "now")
        key = (issuer, token)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
        if hit is not None:
            claims, kid = hit
            expired = claims["exp"] <= now_dt.timestamp() - DEFAULT_LEEWAY_S
            if not expired and keyring.verification_key(kid, now_dt) is not None:
                return claims
            with self._lock:
                self._entries.pop(key, None)
        claims = verify_access_token(keyring, token, issuer=issuer, now=now_dt)
        kid = _check_header(_read_header(token))
        with self._lock:
            self._entries[key] = (claims, kid)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return claims
