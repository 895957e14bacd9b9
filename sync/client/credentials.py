"""Where the console keeps a user's secrets between runs: the OS keyring, and nowhere else.

Two secrets are kept per (server, tenant, username), DESIGN "Desktop":

- the *refresh token* of a remembered sign-in, so the console can start signed in;
- an *offline-unlock verifier*: an argon2id hash of the password bound to the last
  online sign-in time and the identity (user, permissions) granted then, so a known
  user can start the console during an outage with those permissions, for a bounded
  time (:data:`MAX_OFFLINE_AGE`).

Both live in the OS keyring (python-keyring) and never in files, settings or logs.
Where the keyring is unusable (no backend, the ``fail``/``null`` backends, or a
backend that errors) :class:`KeyringCredentialStore` raises
:class:`KeyringUnavailable`; the console says so and falls back to
:class:`MemoryCredentialStore`, which forgets everything when the process ends.
"""

from __future__ import annotations

import json
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol

import httpx
import keyring
import keyring.backend
import keyring.errors
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from keyring.backends import chainer, fail, null

SERVICE_NAME: Final = "QueueDesk"
MAX_OFFLINE_AGE: Final = timedelta(hours=72)
_VERIFIER_VERSION: Final = 1

Secret = Literal["refresh", "offline"]


class KeyringUnavailable(Exception):  # noqa: N818 - reads as what happened
    """The OS keyring cannot keep secrets here; the session stays in memory only."""


class OfflineUnlockError(Exception):
    """Offline unlock was refused; ``str()`` is a sentence for the person signing in."""


class NeverSignedInHere(OfflineUnlockError):  # noqa: N818
    """No online sign-in of this user was saved on this computer."""


class WrongPassword(OfflineUnlockError):  # noqa: N818
    """The password does not match the one of the last online sign-in."""


class OfflineUnlockExpired(OfflineUnlockError):  # noqa: N818
    """The last online sign-in is older than the offline allowance."""


@dataclass(frozen=True, slots=True)
class Account:
    """Whose secrets: normalised the way the server looks the user up, so " Staff1"
    and "staff1" share one keyring entry, as they share one account."""

    server_url: str
    tenant: str
    username: str

    @classmethod
    def of(cls, server_url: str | httpx.URL, tenant: str, username: str) -> Account:
        url = str(httpx.URL(str(server_url))).rstrip("/")
        user = unicodedata.normalize("NFKC", username).strip().casefold()
        return cls(url, tenant.strip().lower(), user)

    def key(self, secret: Secret) -> str:
        """The keyring "username" of one secret; the keyring service is :data:`SERVICE_NAME`."""
        return f"{secret}:{self.server_url}|{self.tenant}|{self.username}"


@dataclass(frozen=True, slots=True)
class OfflineIdentity:
    """Who an offline unlock lets in: the ``user`` object of the last online sign-in."""

    user: dict[str, Any]
    signed_in_at: datetime

    @property
    def permissions(self) -> list[str]:
        return [str(p) for p in self.user.get("permissions", [])]


@dataclass(frozen=True, slots=True)
class OfflineVerifier:
    """The saved proof of the last online sign-in.

    The argon2id hash covers the password *and* the identity JSON together, so
    whoever can edit the keyring entry but does not know the password cannot grant
    themselves permissions or move the sign-in time forward: the hash stops matching.
    """

    password_hash: str
    identity: OfflineIdentity

    @classmethod
    def create(
        cls,
        password: str,
        user: dict[str, Any],
        signed_in_at: datetime,
        hasher: PasswordHasher | None = None,
    ) -> OfflineVerifier:
        identity = OfflineIdentity(dict(user), signed_in_at.astimezone(UTC))
        hashed = (hasher or PasswordHasher()).hash(_bound(password, identity))
        return cls(hashed, identity)

    def verify(
        self, password: str, now: datetime, max_age: timedelta = MAX_OFFLINE_AGE
    ) -> OfflineIdentity:
        """The saved identity, or :class:`WrongPassword` / :class:`OfflineUnlockExpired`.

        The password is checked first, so a stranger learns nothing about the entry.
        A clock set back before the sign-in counts as age zero: offline, nothing can
        tell a wrong clock from a right one, and staff must not be locked out by it.
        """
        try:
            PasswordHasher().verify(self.password_hash, _bound(password, self.identity))
        except (VerificationError, InvalidHashError):
            raise WrongPassword("The password is not correct.") from None
        if now.astimezone(UTC) - self.identity.signed_in_at > max_age:
            hours = int(max_age.total_seconds() // 3600)
            raise OfflineUnlockExpired(
                f"The last online sign-in here was more than {hours} hours ago; "
                "offline sign-in is no longer allowed. Connect to the server and sign in."
            )
        return self.identity

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": _VERIFIER_VERSION,
                "hash": self.password_hash,
                "signed_in_at": self.identity.signed_in_at.isoformat(),
                "user": self.identity.user,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> OfflineVerifier | None:
        """The verifier, or None for an entry this version cannot read (as if absent)."""
        try:
            data = json.loads(text)
            if data.get("v") != _VERIFIER_VERSION:
                return None
            at = datetime.fromisoformat(data["signed_in_at"]).astimezone(UTC)
            return cls(str(data["hash"]), OfflineIdentity(dict(data["user"]), at))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _bound(password: str, identity: OfflineIdentity) -> str:
    # One unambiguous JSON array: no separator character a password could contain.
    return json.dumps(
        [password, identity.signed_in_at.isoformat(), identity.user],
        sort_keys=True,
        separators=(",", ":"),
    )


class CredentialStore(Protocol):
    """Secrets of signed-in users, per :class:`Account`."""

    @property
    def persistent(self) -> bool:
        """Whether what is stored survives the process (False: memory only)."""
        ...

    def get_refresh_token(self, account: Account) -> str | None: ...
    def set_refresh_token(self, account: Account, token: str) -> None: ...
    def delete_refresh_token(self, account: Account) -> None: ...
    def get_verifier(self, account: Account) -> OfflineVerifier | None: ...
    def set_verifier(self, account: Account, verifier: OfflineVerifier) -> None: ...
    def delete_verifier(self, account: Account) -> None: ...


class _EntryStore(ABC):
    """The typed secrets on top of three string operations; subclasses keep the strings."""

    @abstractmethod
    def _get(self, key: str) -> str | None: ...

    @abstractmethod
    def _set(self, key: str, value: str) -> None: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    def get_refresh_token(self, account: Account) -> str | None:
        return self._get(account.key("refresh"))

    def set_refresh_token(self, account: Account, token: str) -> None:
        self._set(account.key("refresh"), token)

    def delete_refresh_token(self, account: Account) -> None:
        self._delete(account.key("refresh"))

    def get_verifier(self, account: Account) -> OfflineVerifier | None:
        text = self._get(account.key("offline"))
        return None if text is None else OfflineVerifier.from_json(text)

    def set_verifier(self, account: Account, verifier: OfflineVerifier) -> None:
        self._set(account.key("offline"), verifier.to_json())

    def delete_verifier(self, account: Account) -> None:
        self._delete(account.key("offline"))


class MemoryCredentialStore(_EntryStore):
    """Secrets for this process only: the fallback when the keyring is unusable."""

    persistent = False

    def __init__(self) -> None:
        self._entries: dict[str, str] = {}

    def _get(self, key: str) -> str | None:
        return self._entries.get(key)

    def _set(self, key: str, value: str) -> None:
        self._entries[key] = value

    def _delete(self, key: str) -> None:
        self._entries.pop(key, None)


def _unusable(backend: keyring.backend.KeyringBackend) -> bool:
    if isinstance(backend, fail.Keyring | null.Keyring):
        return True
    # An empty chainer silently drops everything, like the null backend.
    return isinstance(backend, chainer.ChainerBackend) and not list(backend.backends)


class KeyringCredentialStore(_EntryStore):
    """Secrets in the OS keyring, under the service name :data:`SERVICE_NAME`.

    Every backend failure becomes :class:`KeyringUnavailable`: a locked collection,
    a missing D-Bus session or a denied prompt all mean "cannot keep it here".
    """

    persistent = True

    def __init__(self, backend: keyring.backend.KeyringBackend | None = None) -> None:
        self._backend = backend or keyring.get_keyring()
        if _unusable(self._backend):
            raise KeyringUnavailable(
                f"No usable system keyring was found ({self._backend.name}); "
                "sign-ins will not be remembered after the console closes."
            )

    def _fail(self, exc: Exception) -> KeyringUnavailable:
        name = type(exc).__name__
        return KeyringUnavailable(f"The system keyring is not usable ({name}: {exc}).")

    def _get(self, key: str) -> str | None:
        try:
            return self._backend.get_password(SERVICE_NAME, key)
        except Exception as exc:  # backends raise their own types (D-Bus, secretstorage)
            raise self._fail(exc) from exc

    def _set(self, key: str, value: str) -> None:
        try:
            self._backend.set_password(SERVICE_NAME, key, value)
        except Exception as exc:
            raise self._fail(exc) from exc

    def _delete(self, key: str) -> None:
        try:
            self._backend.delete_password(SERVICE_NAME, key)
        except keyring.errors.PasswordDeleteError:
            pass  # nothing stored: already the wanted outcome
        except Exception as exc:
            raise self._fail(exc) from exc


def open_credential_store() -> tuple[CredentialStore, str | None]:
    """The keyring store, or a memory store and the sentence saying why not."""
    try:
        return KeyringCredentialStore(), None
    except KeyringUnavailable as exc:
        return MemoryCredentialStore(), str(exc)


def verify_offline(
    store: CredentialStore,
    account: Account,
    password: str,
    now: datetime,
    max_age: timedelta = MAX_OFFLINE_AGE,
) -> OfflineIdentity:
    """Let a known user in without the server, or raise an :class:`OfflineUnlockError`."""
    verifier = store.get_verifier(account)
    if verifier is None:
        raise NeverSignedInHere(
            f"{account.username} has not signed in online on this computer yet; "
            "offline sign-in needs one online sign-in first."
        )
    return verifier.verify(password, now, max_age)


class InMemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring backend holding entries in a dict, for tests through the keyring API.

    Its priority is below the ``fail`` backend's, so keyring's automatic choice
    never picks it: it is used only when passed to ``keyring.set_keyring()``.
    """

    priority = -2.0

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)
