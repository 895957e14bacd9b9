"""API keys: format, checksum, hashing and scopes."""

from __future__ import annotations

import hashlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.security.api_keys import (
    API_KEY_LENGTH,
    BASE62_ALPHABET,
    ApiKeyFormatError,
    NewApiKey,
    check_format,
    effective_scopes,
    generate_api_key,
    parse_api_key,
)


@pytest.fixture
def key() -> NewApiKey:
    return generate_api_key()


def _checksum(body: str) -> str:
    """Independent re-implementation of the documented checksum."""
    value, digits = zlib.crc32(body.encode()), ""
    while value:
        value, d = divmod(value, 62)
        digits = BASE62_ALPHABET[d] + digits
    return digits.rjust(6, "0")


def test_generated_key_has_the_documented_shape(key: NewApiKey) -> None:
    text = key.plaintext
    assert text.startswith("qd_")
    assert len(text) == API_KEY_LENGTH == 3 + 30 + 6
    assert set(text[3:]) <= set(BASE62_ALPHABET)
    assert text[-6:] == _checksum(text[:-6])
    assert key.prefix == text[3:11]
    assert key.key_hash == hashlib.sha256(text.encode()).hexdigest()


def test_generated_keys_differ() -> None:
    assert len({generate_api_key().plaintext for _ in range(50)}) == 50


def test_plaintext_is_neither_in_the_hash_nor_the_repr(key: NewApiKey) -> None:
    assert key.plaintext not in key.key_hash
    assert key.plaintext[3:] not in key.key_hash
    assert key.plaintext not in repr(key)
    assert len(key.key_hash) == 64


def test_parse_returns_what_storage_looks_up(key: NewApiKey) -> None:
    parsed = parse_api_key(key.plaintext)
    assert (parsed.prefix, parsed.key_hash) == (key.prefix, key.key_hash)
    assert check_format(key.plaintext)


def test_known_vector() -> None:
    body = "qd_" + "A" * 30
    text = body + _checksum(body)
    assert check_format(text)
    assert parse_api_key(text).prefix == "AAAAAAAA"


@pytest.mark.parametrize("position", range(3, API_KEY_LENGTH))
def test_any_single_changed_character_fails_the_checksum(key: NewApiKey, position: int) -> None:
    original = key.plaintext[position]
    replacement = "1" if original != "1" else "2"
    mutated = key.plaintext[:position] + replacement + key.plaintext[position + 1 :]
    with pytest.raises(ApiKeyFormatError, match="checksum"):
        parse_api_key(mutated)
    assert not check_format(mutated)


def test_swapped_neighbours_fail_the_checksum(key: NewApiKey) -> None:
    chars = list(key.plaintext)
    i = next(i for i in range(3, len(chars) - 1) if chars[i] != chars[i + 1])
    chars[i], chars[i + 1] = chars[i + 1], chars[i]
    assert not check_format("".join(chars))


@pytest.mark.parametrize("prefix", ["qx_", "QD_", "qd-", "dq_", "xx_"])
def test_wrong_prefix_is_refused(key: NewApiKey, prefix: str) -> None:
    with pytest.raises(ApiKeyFormatError, match="start with"):
        parse_api_key(prefix + key.plaintext[3:])


@pytest.mark.parametrize("cut", [1, 6, 20])
def test_wrong_length_is_refused(key: NewApiKey, cut: int) -> None:
    with pytest.raises(ApiKeyFormatError, match="39 characters"):
        parse_api_key(key.plaintext[:-cut])
    with pytest.raises(ApiKeyFormatError, match="39 characters"):
        parse_api_key(key.plaintext + "A" * cut)


@pytest.mark.parametrize("intruder", ["-", "_", "+", "/", "=", " ", "é", "٣", "Ａ", "\n"])
def test_non_base62_character_is_refused(key: NewApiKey, intruder: str) -> None:
    mutated = key.plaintext[:10] + intruder + key.plaintext[11:]
    with pytest.raises(ApiKeyFormatError, match="characters other than"):
        parse_api_key(mutated)


@pytest.mark.parametrize("value", ["", "qd_", "Bearer qd_x", None, 42])
def test_garbage_is_refused(value: object) -> None:
    assert check_format(value) is False  # type: ignore[arg-type]


@given(st.text(max_size=60) | st.text(alphabet=BASE62_ALPHABET, min_size=36, max_size=36))
def test_arbitrary_text_never_raises_and_passes_only_with_a_valid_checksum(text: str) -> None:
    for candidate in (text, "qd_" + text):
        if check_format(candidate):
            assert len(candidate) == API_KEY_LENGTH
            assert candidate[-6:] == _checksum(candidate[:-6])


@given(
    st.text(alphabet=BASE62_ALPHABET, min_size=30, max_size=30),
    st.integers(min_value=3, max_value=API_KEY_LENGTH - 1),
    st.sampled_from(BASE62_ALPHABET),
)
def test_any_well_formed_key_round_trips_and_any_edit_is_caught(
    random_part: str, position: int, replacement: str
) -> None:
    text = "qd_" + random_part + _checksum("qd_" + random_part)
    parsed = parse_api_key(text)
    assert parsed.prefix == random_part[:8]
    assert parsed.key_hash == hashlib.sha256(text.encode()).hexdigest()
    edited = text[:position] + replacement + text[position + 1 :]
    assert check_format(edited) is (edited == text)


def test_generated_keys_always_pass_their_own_check() -> None:
    for _ in range(200):
        key = generate_api_key()
        assert parse_api_key(key.plaintext).key_hash == key.key_hash


# --- scopes ---------------------------------------------------------------------------


def test_effective_scopes_is_the_intersection() -> None:
    assert effective_scopes(
        {"tickets:read", "tickets:write", "reports:read"},
        ["tickets:read", "reports:read", "users:admin"],
    ) == frozenset({"tickets:read", "reports:read"})


def test_key_never_grants_more_than_its_owner_holds_now() -> None:
    # The owner lost "tickets:write" after the key was made.
    assert effective_scopes({"tickets:write"}, {"tickets:read"}) == frozenset()
    assert effective_scopes({"tickets:read"}, set()) == frozenset()
    assert effective_scopes(set(), {"tickets:read"}) == frozenset()


@given(st.frozensets(st.sampled_from("abcdef")), st.frozensets(st.sampled_from("abcdef")))
def test_effective_scopes_is_within_both(key_scopes: frozenset[str], owner: frozenset[str]) -> None:
    result = effective_scopes(key_scopes, owner)
    assert result <= key_scopes
    assert result <= owner
