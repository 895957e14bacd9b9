"""The credential stores and the offline-unlock verifier, through the real keyring API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import keyring
import keyring.backend
import keyring.errors
import pytest
from argon2 import PasswordHasher
from keyring.backends import fail, null

from sync.client.credentials import (
    MAX_OFFLINE_AGE,
    SERVICE_NAME,
    Account,
    InMemoryKeyring,
    KeyringCredentialStore,
    KeyringUnavailable,
    MemoryCredentialStore,
    NeverSignedInHere,
    OfflineUnlockExpired,
    OfflineVerifier,
    WrongPassword,
    open_credential_store,
    verify_offline,
)

ACCOUNT = Account.of("https://queue.example.org", "acme", "staff1")
SIGNED_IN_AT = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
USER: dict[str, Any] = {"id": "u1", "username": "staff1", "permissions": ["queue.call"]}
# Argon2id at its cheapest: these tests check the logic, not the cost.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class LockedKeyring(keyring.backend.KeyringBackend):
    """A backend that fails like a locked Secret Service collection."""

    priority = -3.0  # never chosen automatically

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("collection is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.KeyringLocked("collection is locked")

    def delete_password(self, service: str, username: str) -> None:
        raise keyring.errors.KeyringLocked("collection is locked")


@pytest.fixture
def backend_of_test() -> Iterator[None]:
    previous = keyring.get_keyring()
    yield
    keyring.set_keyring(previous)


def verifier(password: str = "pw-1") -> OfflineVerifier:
    return OfflineVerifier.create(password, USER, SIGNED_IN_AT, hasher=FAST)


def test_accounts_are_normalised_like_the_server_looks_users_up() -> None:
    assert Account.of("https://Queue.Example.org/", " ACME ", " Staff1 ") == ACCOUNT
    assert ACCOUNT.key("refresh") == "refresh:https://queue.example.org|acme|staff1"
    assert ACCOUNT.key("offline") != ACCOUNT.key("refresh")


def test_refresh_token_round_trip_through_the_keyring(memory_keyring: InMemoryKeyring) -> None:
    store = KeyringCredentialStore()
    assert store.persistent
    assert store.get_refresh_token(ACCOUNT) is None

    store.set_refresh_token(ACCOUNT, "qdr_secret")

    assert store.get_refresh_token(ACCOUNT) == "qdr_secret"
    # Through the public keyring API, under the QueueDesk service name.
    assert keyring.get_password(SERVICE_NAME, ACCOUNT.key("refresh")) == "qdr_secret"
    other = Account.of("https://other.example.org", "acme", "staff1")
    assert store.get_refresh_token(other) is None
    store.delete_refresh_token(ACCOUNT)
    store.delete_refresh_token(ACCOUNT)  # deleting what is not there is fine
    assert store.get_refresh_token(ACCOUNT) is None
    assert memory_keyring.entries == {}


def test_verifier_round_trip_keeps_identity_and_hash(memory_keyring: InMemoryKeyring) -> None:
    store = KeyringCredentialStore()
    saved = verifier()

    store.set_verifier(ACCOUNT, saved)

    entry = json.loads(memory_keyring.entries[(SERVICE_NAME, ACCOUNT.key("offline"))])
    assert entry["hash"].startswith("$argon2id$")
    assert "pw-1" not in json.dumps(entry)
    assert store.get_verifier(ACCOUNT) == saved
    store.delete_verifier(ACCOUNT)
    assert store.get_verifier(ACCOUNT) is None


def test_an_unreadable_verifier_entry_counts_as_absent(memory_keyring: InMemoryKeyring) -> None:
    keyring.set_password(SERVICE_NAME, ACCOUNT.key("offline"), "{not json")
    with pytest.raises(NeverSignedInHere):
        verify_offline(KeyringCredentialStore(), ACCOUNT, "pw-1", SIGNED_IN_AT)


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()], ids=["fail", "null"])
def test_the_fail_and_null_backends_are_unavailable(
    backend: keyring.backend.KeyringBackend, backend_of_test: None
) -> None:
    keyring.set_keyring(backend)
    with pytest.raises(KeyringUnavailable, match="No usable system keyring"):
        KeyringCredentialStore()
    store, reason = open_credential_store()
    assert isinstance(store, MemoryCredentialStore)
    assert not store.persistent
    assert reason is not None
    assert "not be remembered" in reason


def test_a_failing_backend_raises_keyring_unavailable() -> None:
    store = KeyringCredentialStore(LockedKeyring())
    with pytest.raises(KeyringUnavailable, match="collection is locked"):
        store.get_refresh_token(ACCOUNT)
    with pytest.raises(KeyringUnavailable):
        store.set_refresh_token(ACCOUNT, "qdr_x")
    with pytest.raises(KeyringUnavailable):
        store.delete_verifier(ACCOUNT)


def test_a_usable_backend_is_the_store_opened(memory_keyring: InMemoryKeyring) -> None:
    store, reason = open_credential_store()
    assert isinstance(store, KeyringCredentialStore)
    assert reason is None


def test_the_in_memory_backend_is_never_chosen_automatically() -> None:
    assert InMemoryKeyring.priority < fail.Keyring.priority


def test_memory_store_round_trip() -> None:
    store, saved = MemoryCredentialStore(), verifier()
    store.set_refresh_token(ACCOUNT, "qdr_a")
    store.set_verifier(ACCOUNT, saved)
    assert store.get_refresh_token(ACCOUNT) == "qdr_a"
    assert store.get_verifier(ACCOUNT) == saved
    store.delete_refresh_token(ACCOUNT)
    assert store.get_refresh_token(ACCOUNT) is None


def test_offline_unlock_with_the_right_password_gives_the_saved_identity() -> None:
    store = MemoryCredentialStore()
    store.set_verifier(ACCOUNT, verifier("pw-1"))

    identity = verify_offline(store, ACCOUNT, "pw-1", SIGNED_IN_AT + timedelta(hours=71))

    assert identity.user == USER
    assert identity.permissions == ["queue.call"]
    assert identity.signed_in_at == SIGNED_IN_AT


def test_offline_unlock_with_a_wrong_password_is_refused() -> None:
    store = MemoryCredentialStore()
    store.set_verifier(ACCOUNT, verifier("pw-1"))
    with pytest.raises(WrongPassword, match="password is not correct"):
        verify_offline(store, ACCOUNT, "pw-2", SIGNED_IN_AT)


def test_offline_unlock_ends_72_hours_after_the_last_online_sign_in() -> None:
    store = MemoryCredentialStore()
    store.set_verifier(ACCOUNT, verifier("pw-1"))
    verify_offline(store, ACCOUNT, "pw-1", SIGNED_IN_AT + MAX_OFFLINE_AGE)
    with pytest.raises(OfflineUnlockExpired, match="more than 72 hours ago"):
        verify_offline(
            store, ACCOUNT, "pw-1", SIGNED_IN_AT + MAX_OFFLINE_AGE + timedelta(seconds=1)
        )
    with pytest.raises(OfflineUnlockExpired, match="more than 1 hours ago"):
        verify_offline(
            store, ACCOUNT, "pw-1", SIGNED_IN_AT + timedelta(hours=2), timedelta(hours=1)
        )


def test_offline_unlock_without_an_earlier_online_sign_in_is_refused() -> None:
    with pytest.raises(NeverSignedInHere, match="staff1 has not signed in online"):
        verify_offline(MemoryCredentialStore(), ACCOUNT, "pw-1", SIGNED_IN_AT)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda entry: entry["user"].update(permissions=["tenant.admin"]),
        lambda entry: entry.update(signed_in_at="2099-01-01T00:00:00+00:00"),
    ],
    ids=["permissions", "sign-in time"],
)
def test_editing_the_saved_identity_breaks_the_verifier(tamper: Any) -> None:
    entry = json.loads(verifier("pw-1").to_json())
    tamper(entry)
    edited = OfflineVerifier.from_json(json.dumps(entry))
    assert edited is not None
    with pytest.raises(WrongPassword):
        edited.verify("pw-1", SIGNED_IN_AT)


def test_the_default_hasher_is_argon2id() -> None:
    saved = OfflineVerifier.create("pw-1", USER, SIGNED_IN_AT)
    assert saved.password_hash.startswith("$argon2id$")
    assert saved.verify("pw-1", SIGNED_IN_AT).user == USER
