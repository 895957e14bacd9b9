"""The console's signed-in session with the central service, and what can go wrong with it.

:class:`AuthSession` signs in with a password (``POST /api/v1/auth/login``), keeps
the short-lived access token fresh by rotating the refresh token ahead of expiry
(``POST /auth/refresh``) and signs out (``POST /auth/logout``). With "remember me"
each rotated refresh token is written to the credential store the moment it
arrives: the server has already retired the old one, so a crash after the
rotation must not leave the console holding only a dead token.

Failures are the :class:`~sync.client.api.ClientError` family, plus
:class:`WrongCredentials` for a refused password.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from pydantic import BaseModel, ConfigDict
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from sync.client.api import (
    ClientError,
    Offline,
    SignedOut,
    TlsFailure,
    problem,
    response_failure,
    transport_failure,
)
from sync.client.backoff import Backoff
from sync.client.credentials import Account, CredentialStore, KeyringUnavailable, OfflineVerifier

REFRESH_MARGIN_S: Final = 60.0


class WrongCredentials(ClientError):  # noqa: N818
    """The tenant, username or password was refused (the server does not say which)."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, Offline) and not isinstance(exc, TlsFailure)


# -- the session ----------------------------------------------------------------------


class TenantInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: uuid.UUID
    slug: str
    name: str


class BranchInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: uuid.UUID
    code: str
    name: str
    permissions: list[str]


class UserInfo(BaseModel):
    """The signed-in user as the server describes them at login and refresh."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    id: uuid.UUID
    username: str
    display_name: str
    tenant: TenantInfo
    permissions: list[str]
    branches: list[BranchInfo]


class SessionState(enum.Enum):
    SIGNED_OUT = "signed_out"
    SIGNED_IN = "signed_in"


@dataclass(frozen=True, slots=True)
class _Tokens:
    access: str
    refresh: str
    refresh_at: float  # on the session's monotonic clock


class AuthSession:
    """One user's session over a shared ``httpx.AsyncClient`` whose ``base_url`` is the server.

    Refreshes are single-flight: callers that find the same stale token wait on one
    lock, and whoever gets it second sees the token already replaced and returns
    the new one instead of rotating again (a second rotation would present a
    retired refresh token). A refresh that gets no answer is retried with the
    *same* refresh token: if the server did rotate it and the answer was lost, its
    grace window (``refresh_grace_s``) answers the retry with a new pair.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        store: CredentialStore,
        *,
        refresh_margin_s: float = REFRESH_MARGIN_S,
        refresh_attempts: int = 3,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client, self._store = client, store
        self._margin, self._attempts = refresh_margin_s, refresh_attempts
        self._backoff = backoff or Backoff(base=0.5, cap=4.0)
        self._clock, self._wall_clock, self._sleep = clock, wall_clock, sleep
        self._lock = asyncio.Lock()
        self._tokens: _Tokens | None = None
        self._remember = False
        self.account: Account | None = None
        self.user: UserInfo | None = None
        self.credential_warning: str | None = None
        """Why the sign-in could not be remembered (the keyring failed), else None."""

    @property
    def state(self) -> SessionState:
        return SessionState.SIGNED_IN if self._tokens else SessionState.SIGNED_OUT

    async def login(
        self,
        tenant: str,
        username: str,
        password: str,
        *,
        remember: bool = False,
        device_id: uuid.UUID | None = None,
    ) -> UserInfo:
        """Sign in with a password.

        ``remember`` keeps the refresh token and an offline-unlock verifier in the
        credential store; without it both are forgotten for this account.
        """
        body: dict[str, Any] = {"tenant": tenant, "username": username, "password": password}
        if device_id is not None:
            body["device_id"] = str(device_id)
        sent = self._clock()
        response = await self._post("/api/v1/auth/login", body)
        if response.status_code == 401:
            raise WrongCredentials(str(problem(response).get("detail") or "Sign-in refused."))
        account = Account.of(self._client.base_url, tenant, username)
        user = self._start(account, response, sent)
        self._remember = remember
        try:
            if remember:
                # argon2 is slow on purpose: off the event loop.
                identity, now = user.model_dump(mode="json"), self._wall_clock()
                verifier = await asyncio.to_thread(OfflineVerifier.create, password, identity, now)
                self._store.set_verifier(account, verifier)
                self._store.set_refresh_token(account, self._require().refresh)
            else:
                self._store.delete_refresh_token(account)
                self._store.delete_verifier(account)
        except KeyringUnavailable as exc:
            self.credential_warning = str(exc)
        return user

    async def resume(self, tenant: str, username: str) -> UserInfo:
        """Sign in with the remembered refresh token; :class:`SignedOut` if there is none."""
        account = Account.of(self._client.base_url, tenant, username)
        token = self._store.get_refresh_token(account)
        if token is None:
            raise SignedOut(f"{account.username} has no saved sign-in here; sign in again.")
        self.account, self._remember = account, True
        self._tokens = _Tokens(access="", refresh=token, refresh_at=-math.inf)
        try:
            await self._rotate(self._tokens)
        except ClientError:
            self._tokens = None  # not signed in; the saved token stays for the next try
            raise
        assert self.user is not None
        return self.user

    async def access_token(self) -> str:
        """A bearer token valid for a while yet, refreshing first if it is near expiry."""
        tokens = self._require()
        if self._clock() < tokens.refresh_at:
            return tokens.access
        return (await self._rotate(tokens)).access

    async def refresh(self, stale_access: str | None = None) -> str:
        """Rotate now, unless ``stale_access`` (the token a 401 refused) was replaced already."""
        tokens = self._require()
        if stale_access is not None and tokens.access != stale_access:
            return tokens.access
        return (await self._rotate(tokens)).access

    async def logout(self) -> bool:
        """Sign out here and end this session's refresh family on the server.

        The local sign-out always happens; the result says whether the server
        confirmed it (False when it could not be reached: its tokens then simply
        expire). The offline-unlock verifier is kept: it needs the password anyway.
        """
        confirmed = False
        try:
            access = await self.access_token()
            tokens = self._require()
            response = await self._post(
                "/api/v1/auth/logout",
                {"refresh_token": tokens.refresh},
                headers={"Authorization": f"Bearer {access}"},
            )
            confirmed = response.status_code in (204, 401)  # 401: already ended there
        except ClientError:
            pass
        finally:
            self._end()
        return confirmed

    # -- internals ----------------------------------------------------------------------

    def _require(self) -> _Tokens:
        if self._tokens is None:
            raise SignedOut("You are signed out; sign in again.")
        return self._tokens

    async def _post(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        try:
            return await self._client.post(path, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise transport_failure(exc) from exc

    def _start(self, account: Account, response: httpx.Response, sent: float) -> UserInfo:
        if response.status_code != 200:
            raise response_failure(response)
        pair = response.json()
        ttl = float(pair["expires_in"])
        # Timed from when the request left, so a slow answer errs towards refreshing early.
        refresh_at = sent + ttl - min(self._margin, ttl / 2)
        self._tokens = _Tokens(str(pair["access_token"]), str(pair["refresh_token"]), refresh_at)
        self.account, self.user = account, UserInfo.model_validate(pair["user"])
        return self.user

    async def _rotate(self, stale: _Tokens) -> _Tokens:
        async with self._lock:
            current = self._require()
            if current is not stale:
                return current  # another caller rotated while this one waited
            account = self.account
            assert account is not None
            response = None
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=self._backoff,
                retry=retry_if_exception(_retryable),
                sleep=self._sleep,
                reraise=True,
            ):
                with attempt:
                    sent = self._clock()
                    response = await self._post(
                        "/api/v1/auth/refresh", {"refresh_token": current.refresh}
                    )
            assert response is not None
            if response.status_code == 401:
                self._end()
                detail = problem(response).get("detail") or "The session has ended."
                raise SignedOut(str(detail))
            self._start(account, response, sent)
            if self._remember:
                try:
                    self._store.set_refresh_token(account, self._require().refresh)
                except KeyringUnavailable as exc:
                    self.credential_warning = str(exc)
            return self._require()

    def _end(self) -> None:
        """Sign out here; the saved refresh token is dead or unwanted, so forget it too."""
        self._tokens = None
        if self.account is not None:
            try:
                self._store.delete_refresh_token(self.account)
            except KeyringUnavailable as exc:
                self.credential_warning = str(exc)
