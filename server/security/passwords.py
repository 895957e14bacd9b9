"""Password hashing (argon2id) and the policy for new passwords.

Passwords are NFKC-normalised before hashing and before the length check, so the
same password typed on two keyboards (a composed "é" or a decomposed one, a
full-width digit) hashes the same, as NIST SP 800-63B recommends.
"""

from __future__ import annotations

import secrets
import unicodedata
from typing import Final, Literal

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import ARGON2_VERSION

# OWASP Password Storage Cheat Sheet, argon2id minimum: 19 MiB, 2 passes, 1 lane.
MEMORY_COST_KIB: Final = 19_456
TIME_COST: Final = 2
PARALLELISM: Final = 1
HASH_LEN: Final = 32
SALT_LEN: Final = 16

MIN_LENGTH: Final = 8
MAX_LENGTH: Final = 128
# Longer input cannot match any hash made under the policy; refusing it early
# keeps a login request with a megabyte "password" from costing anything.
MAX_VERIFY_LENGTH: Final = 1024

_hasher: Final = PasswordHasher(
    time_cost=TIME_COST,
    memory_cost=MEMORY_COST_KIB,
    parallelism=PARALLELISM,
    hash_len=HASH_LEN,
    salt_len=SALT_LEN,
    type=Type.ID,
)


class PasswordPolicyError(ValueError):
    """A new password breaks the policy; the message can be shown to the user."""


def _normalise(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def validate_new_password(password: str) -> None:
    """Raise :class:`PasswordPolicyError` unless ``password`` may be set.

    Length counts Unicode code points after NFKC normalisation.
    """
    if not isinstance(password, str):
        raise PasswordPolicyError("Password must be text.")
    normalised = _normalise(password)
    if len(normalised) < MIN_LENGTH:
        raise PasswordPolicyError(f"Password must be at least {MIN_LENGTH} characters long.")
    if len(normalised) > MAX_LENGTH:
        raise PasswordPolicyError(f"Password must be at most {MAX_LENGTH} characters long.")
    if normalised.isspace():
        raise PasswordPolicyError("Password must not consist only of whitespace.")


def hash_password(password: str) -> str:
    """Hash ``password`` with argon2id and a fresh random salt (PHC string)."""
    return _hasher.hash(_normalise(password))


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; never raises on a bad hash."""
    if not isinstance(password, str) or len(password) > MAX_VERIFY_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash, _normalise(password))
    except (VerificationError, InvalidHashError, ValueError, TypeError):
        # VerifyMismatchError is a VerificationError; a corrupt or foreign hash
        # raises InvalidHashError. Either way the answer is simply "no".
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash is weaker than the current parameters (or unreadable).

    Stronger hashes are left alone: rehashing them on login would downgrade them.
    """
    try:
        params = extract_parameters(password_hash)
    except (InvalidHashError, ValueError):
        return True
    return (
        params.type is not Type.ID
        or params.version < ARGON2_VERSION
        or params.memory_cost < MEMORY_COST_KIB
        or params.time_cost < TIME_COST
        or params.hash_len < HASH_LEN
        or params.salt_len < SALT_LEN
    )


# Verified against when the user does not exist, so that an unknown user and a
# wrong password take the same time; the password behind it is thrown away.
_DUMMY_HASH: Final = _hasher.hash(secrets.token_urlsafe(24))


def verify_dummy(password: str) -> Literal[False]:
    """Spend the time of one verification and return False (unknown-user path)."""
    verify_password(_DUMMY_HASH, password)
    return False
