"""API keys: ``qd_<30 random base62><6-char base62 CRC32>``.

The checksum lets a mistyped or truncated key, or random garbage, be refused
from its text alone, before any database lookup, and lets secret scanners
recognise leaked keys with few false positives. Only the SHA-256 of a key and a
short prefix are stored; the plaintext is shown once.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

API_KEY_PREFIX: Final = "qd_"
BASE62_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH: Final = 30  # 30 * log2(62) ≈ 178 bits
CHECKSUM_LENGTH: Final = 6  # 62**6 > 2**32, so any CRC32 fits
DISPLAY_PREFIX_LENGTH: Final = 8
API_KEY_LENGTH: Final = len(API_KEY_PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH

_BASE62: Final = frozenset(BASE62_ALPHABET)


class ApiKeyFormatError(ValueError):
    """The text is not a well-formed QueueDesk API key."""


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A freshly generated key: show ``plaintext`` once, store the rest."""

    plaintext: str = field(repr=False)
    prefix: str
    key_hash: str


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """What a presented key is looked up by."""

    prefix: str
    key_hash: str


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, digit = divmod(number, 62)
        digits.append(BASE62_ALPHABET[digit])
    return "".join(reversed(digits)).rjust(width, BASE62_ALPHABET[0])


def _checksum(body: str) -> str:
    """Base62 CRC32 of ``qd_<random>``."""
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def hash_api_key(key: str) -> str:
    """SHA-256 hex of the whole key.

    No HMAC or slow hash is needed: with 178 random bits, neither guessing a key
    nor inverting a leaked hash is feasible, and a plain hash allows an indexed
    equality lookup.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_api_key() -> NewApiKey:
    """A new random key with its display prefix and stored hash."""
    random_part = "".join(secrets.choice(BASE62_ALPHABET) for _ in range(RANDOM_LENGTH))
    body = API_KEY_PREFIX + random_part
    plaintext = body + _checksum(body)
    return NewApiKey(
        plaintext=plaintext,
        prefix=random_part[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_api_key(plaintext),
    )


def parse_api_key(key: str) -> ParsedKey:
    """Validate the format and checksum of ``key``; raise :class:`ApiKeyFormatError`."""
    if not isinstance(key, str) or not key.startswith(API_KEY_PREFIX):
        raise ApiKeyFormatError(f"API key must start with {API_KEY_PREFIX!r}.")
    if len(key) != API_KEY_LENGTH:
        raise ApiKeyFormatError(f"API key must be {API_KEY_LENGTH} characters long.")
    rest = key[len(API_KEY_PREFIX) :]
    # A set of ASCII characters, not str.isalnum(), which accepts any script.
    if not _BASE62.issuperset(rest):
        raise ApiKeyFormatError("API key contains characters other than A-Z, a-z and 0-9.")
    body, checksum = key[:-CHECKSUM_LENGTH], key[-CHECKSUM_LENGTH:]
    if _checksum(body) != checksum:
        raise ApiKeyFormatError("API key checksum does not match: it was mistyped or truncated.")
    return ParsedKey(prefix=rest[:DISPLAY_PREFIX_LENGTH], key_hash=hash_api_key(key))


def check_format(key: str) -> bool:
    """True when ``key`` has the right prefix, length, alphabet and checksum."""
    try:
        parse_api_key(key)
    except ApiKeyFormatError:
        return False
    return True


def effective_scopes(key_scopes: Iterable[str], owner_permissions: Iterable[str]) -> frozenset[str]:
    """The scopes a key may use now: never more than its owner currently holds."""
    return frozenset(key_scopes) & frozenset(owner_permissions)
