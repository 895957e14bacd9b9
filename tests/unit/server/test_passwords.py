"""Password hashing and policy. Argon2 is slow on purpose: few hashes are made here."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from server.security import passwords
from server.security.passwords import (
    PasswordPolicyError,
    hash_password,
    needs_rehash,
    validate_new_password,
    verify_dummy,
    verify_password,
)

# Composed "é": the same password typed with a decomposed "e" + U+0301 must match.
PASSWORD = "Caf\u00e9 queue 42"
DECOMPOSED = "Cafe\u0301 queue 42"


@pytest.fixture(scope="module")
def stored_hash() -> str:
    return hash_password(PASSWORD)


def test_hash_is_argon2id_with_at_least_owasp_parameters(stored_hash: str) -> None:
    params = extract_parameters(stored_hash)
    assert params.type is Type.ID
    assert params.memory_cost >= 19_456
    assert params.time_cost >= 2
    assert params.parallelism == 1
    assert stored_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_hash_holds_no_plaintext(stored_hash: str) -> None:
    assert "queue" not in stored_hash
    assert "Caf" not in stored_hash


def test_right_password_verifies(stored_hash: str) -> None:
    assert verify_password(stored_hash, PASSWORD) is True


def test_password_is_compared_after_nfkc_normalisation(stored_hash: str) -> None:
    assert verify_password(stored_hash, DECOMPOSED) is True


@pytest.mark.parametrize("attempt", ["caf\u00e9 queue 42", "Caf\u00e9 queue 4", "", PASSWORD + " "])
def test_wrong_password_is_refused(stored_hash: str, attempt: str) -> None:
    assert verify_password(stored_hash, attempt) is False


@pytest.mark.parametrize(
    "bad_hash",
    [
        "",
        "not a hash",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
        "$argon2id$v=19$m=19456,t=2,p=1$\u00e9$x",
    ],
)
def test_unreadable_hash_verifies_false_without_raising(bad_hash: str) -> None:
    assert verify_password(bad_hash, PASSWORD) is False
    assert needs_rehash(bad_hash) is True


def test_huge_input_is_refused_without_hashing(stored_hash: str) -> None:
    assert verify_password(stored_hash, "x" * 100_000) is False


def test_verify_dummy_is_always_false_and_uses_current_parameters() -> None:
    assert verify_dummy(PASSWORD) is False
    assert needs_rehash(passwords._DUMMY_HASH) is False


def test_current_hash_needs_no_rehash(stored_hash: str) -> None:
    assert needs_rehash(stored_hash) is False


def test_weaker_hash_needs_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID).hash("pw")
    assert needs_rehash(weak) is True
    # It still verifies, so the login can rehash it right away.
    assert verify_password(weak, "pw") is True


def test_other_argon2_variant_needs_rehash() -> None:
    argon2i = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1, type=Type.I)
    assert needs_rehash(argon2i.hash("pw")) is True


def test_stronger_hash_is_not_downgraded() -> None:
    stronger = PasswordHasher(time_cost=3, memory_cost=19_456, parallelism=2, type=Type.ID)
    assert needs_rehash(stronger.hash("pw")) is False


# --- policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "a" * 8,
        "a" * 128,
        "correct horse battery staple",
        "  spaced  ",
        "\U0001f600" * 8,  # 8 code points
        "\ufb01" * 4,  # "ﬁ" ligature: 4 code points, 8 after NFKC
        "\ufb01" * 64,  # 128 after NFKC
        "p\u00e4sswort",
    ],
)
def test_acceptable_passwords_pass(password: str) -> None:
    validate_new_password(password)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "at least 8"),
        ("a" * 7, "at least 8"),
        ("e\u0301" * 4, "at least 8"),  # 8 code points, 4 after NFKC
        ("a" * 129, "at most 128"),
        ("\ufb01" * 65, "at most 128"),  # 65 code points, 130 after NFKC
        (" " * 8, "whitespace"),
        ("\t\n \r" * 3, "whitespace"),
        ("\u3000" * 10, "whitespace"),  # ideographic space
        ("\u00a0" * 10, "whitespace"),
    ],
)
def test_policy_violations_have_clear_messages(password: str, message: str) -> None:
    with pytest.raises(PasswordPolicyError, match=message):
        validate_new_password(password)


def test_policy_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Password"):
        validate_new_password("short")


def test_non_text_password_is_refused() -> None:
    with pytest.raises(PasswordPolicyError, match="text"):
        validate_new_password(b"bytes-password")  # type: ignore[arg-type]
