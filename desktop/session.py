"""Signing in: online with a password, silently from the keyring, or offline unlock.

:class:`Authenticator` holds the one :class:`~sync.client.auth.AuthSession` of the
console and the ``httpx.AsyncClient`` it talks through (opened per server address
on the UI thread's qasync loop). It turns every failure into
:class:`SignInFailed`, whose ``str()`` is the sentence the sign-in dialog shows.

When the server cannot be reached, a user who signed in online on this computer
before is let in with their password and the permissions granted then
(:func:`~sync.client.credentials.verify_offline`), for a bounded time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx

from core.kpi_rows import Filters
from sync.client.api import ClientError, Offline, SignedOut, Throttled, TlsFailure
from sync.client.auth import AuthSession, SessionState, UserInfo, WrongCredentials
from sync.client.credentials import (
    MAX_OFFLINE_AGE,
    Account,
    CredentialStore,
    NeverSignedInHere,
    OfflineUnlockError,
    OfflineUnlockExpired,
    verify_offline,
)
from sync.client.tls import client_verify

if TYPE_CHECKING:  # the comparison client loads with the first comparison
    from sync.client.reports_api import BranchRow

log = logging.getLogger(__name__)


class SignInFailed(Exception):  # noqa: N818 - reads as what happened
    """Sign-in did not succeed; ``str()`` says why. ``field`` names the input at fault."""

    def __init__(self, message: str, field: str | None = None, *, unreachable: bool = False):
        super().__init__(message)
        self.field = field
        self.unreachable = unreachable


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Who is at the console, and how they got in."""

    user: UserInfo
    server_url: str
    tenant: str
    username: str
    offline: bool = False  # unlocked without the server, with the last granted permissions
    offline_until: datetime | None = None  # when an offline unlock stops being allowed

    def branch_permissions(self, branch_id: str) -> frozenset[str]:
        for branch in self.user.branches:
            if str(branch.id) == branch_id:
                return frozenset(branch.permissions)
        return frozenset()


def normalize_url(text: str) -> str:
    """``queue.example.org`` -> ``https://queue.example.org``; raises SignInFailed if unusable."""
    value = text.strip().rstrip("/")
    if not value:
        raise SignInFailed("Enter the server address, e.g. https://queue.example.org.", "server")
    if "://" not in value:
        value = "https://" + value
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise SignInFailed(f"{text!r} is not a server address ({exc}).", "server") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise SignInFailed(f"{text!r} is not a server address; use https://host[:port].", "server")
    return str(url).rstrip("/")


class Authenticator:
    """The console's sign-in state. Use from the UI thread's event loop only."""

    def __init__(
        self,
        store: CredentialStore,
        *,
        max_offline_age: timedelta = MAX_OFFLINE_AGE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout_s: float = 10.0,
    ) -> None:
        self.store = store
        self.max_offline_age = max_offline_age
        self.clock = clock
        self._timeout = timeout_s
        self._client: httpx.AsyncClient | None = None
        self.session: AuthSession | None = None
        self.signed_in: SignedIn | None = None
        self.on_change: Callable[[SignedIn], None] | None = None
        """Called (UI thread) when an offline unlock became an online session."""
        self._lock = asyncio.Lock()

    # -- signing in ------------------------------------------------------------------

    async def sign_in(
        self, server: str, tenant: str, username: str, password: str, *, remember: bool
    ) -> SignedIn:
        server_url = normalize_url(server)
        tenant, username = tenant.strip(), username.strip()
        if not tenant:
            raise SignInFailed("Enter your organisation's tenant name.", "tenant")
        if not username:
            raise SignInFailed("Enter your username.", "username")
        if not password:
            raise SignInFailed("Enter your password.", "password")
        session = await self._session_for(server_url)
        try:
            user = await session.login(tenant, username, password, remember=remember)
        except WrongCredentials:
            raise SignInFailed(
                "The tenant, username or password is not correct.", "password"
            ) from None
        except TlsFailure as exc:
            raise SignInFailed(str(exc), "server") from None
        except Offline as exc:
            return self._unlock_offline(server_url, tenant, username, password, exc)
        except Throttled as exc:
            raise SignInFailed(f"Too many sign-in attempts. {exc}") from None
        except ClientError as exc:
            raise SignInFailed(f"The server refused the sign-in: {exc}") from None
        if session.credential_warning:
            log.warning("sign-in not remembered: %s", session.credential_warning)
        return self._signed_in(SignedIn(user, server_url, tenant, username))

    async def resume(self, server: str, tenant: str, username: str) -> SignedIn | None:
        """Sign in with the remembered refresh token; None when there is none (or it died).

        Raises :class:`SignInFailed` with ``unreachable`` set when the server cannot be
        reached, so the dialog can offer offline unlock with the password.
        """
        if not (server and tenant and username):
            return None
        server_url = normalize_url(server)
        account = Account.of(server_url, tenant, username)
        if self.store.get_refresh_token(account) is None:
            return None
        session = await self._session_for(server_url)
        try:
            user = await session.resume(tenant, username)
        except SignedOut:
            return None
        except Offline as exc:
            raise SignInFailed(
                f"{exc} Enter your password to work offline.", "password", unreachable=True
            ) from None
        except ClientError as exc:
            log.warning("silent sign-in failed: %s", type(exc).__name__)
            return None
        return self._signed_in(SignedIn(user, server_url, tenant, username))

    def _unlock_offline(
        self, server_url: str, tenant: str, username: str, password: str, cause: Offline
    ) -> SignedIn:
        account = Account.of(server_url, tenant, username)
        now = self.clock()
        try:
            identity = verify_offline(self.store, account, password, now, self.max_offline_age)
        except NeverSignedInHere as exc:
            raise SignInFailed(f"{cause}\n{exc}", "server", unreachable=True) from None
        except OfflineUnlockExpired as exc:
            raise SignInFailed(f"{cause}\n{exc}", "server", unreachable=True) from None
        except OfflineUnlockError as exc:
            raise SignInFailed(str(exc), "password", unreachable=True) from None
        user = UserInfo.model_validate(identity.user)
        until = identity.signed_in_at + self.max_offline_age
        log.info("offline unlock for %s until %s", account.username, until.isoformat())
        return self._signed_in(
            SignedIn(user, server_url, tenant, username, offline=True, offline_until=until)
        )

    def _signed_in(self, signed_in: SignedIn) -> SignedIn:
        self.signed_in = signed_in
        return signed_in

    # -- tokens for the sync thread --------------------------------------------------------

    async def access_token(self) -> str:
        return await (await self._live_session()).access_token()

    async def refresh(self, stale_access: str | None = None) -> str:
        return await (await self._live_session()).refresh(stale_access)

    async def _live_session(self) -> AuthSession:
        """The signed-in session; after an offline unlock, a remembered one resumed now."""
        async with self._lock:  # one resume at a time: two would rotate one token twice
            signed = self.signed_in
            if signed is None:
                raise SignedOut("You are signed out; sign in again.")
            session = self.session
            if session is not None and session.state is SessionState.SIGNED_IN:
                return session
            if not signed.offline:
                raise SignedOut("Your session has ended; sign in again to keep syncing.")
            account = Account.of(signed.server_url, signed.tenant, signed.username)
            if self.store.get_refresh_token(account) is None:
                raise SignedOut(
                    "You unlocked the console offline; sign in again to send your "
                    "changes to the server."
                )
            session = await self._session_for(signed.server_url)
            user = await session.resume(signed.tenant, signed.username)  # Offline propagates
            online = dataclasses.replace(signed, user=user, offline=False, offline_until=None)
            self._signed_in(online)
            if self.on_change is not None:
                self.on_change(online)
            return session

    async def branch_comparison(self, filters: Filters) -> list[BranchRow]:
        """Every branch's KPIs from the service; raises the sync calls' ClientError family."""
        await self._live_session()
        assert self._client is not None  # a live session has its client
        from sync.client import reports_api  # loaded with the first comparison

        return await reports_api.branch_comparison(self._client, self, filters)

    # -- signing out and closing ---------------------------------------------------------

    async def sign_out(self) -> None:
        """End the session here and on the server, and forget the remembered sign-in."""
        signed = self.signed_in
        self.signed_in = None
        if self.session is not None and self.session.account is not None:
            await self.session.logout()
        elif signed is not None:
            # Offline unlock has no session; the remembered token must still go.
            account = Account.of(signed.server_url, signed.tenant, signed.username)
            self.store.delete_refresh_token(account)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client, self.session = None, None

    async def _session_for(self, server_url: str) -> AuthSession:
        if self._client is not None and str(self._client.base_url).rstrip("/") == server_url:
            assert self.session is not None
            return self.session
        await self.close()
        self._client = httpx.AsyncClient(
            base_url=server_url, timeout=self._timeout, verify=client_verify(True, server_url)
        )
        self.session = AuthSession(self._client, self.store)
        return self.session
