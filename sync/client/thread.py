"""The background sync thread of the console (DESIGN "Desktop").

:class:`SyncThread` owns a thread with its own asyncio loop, its own
``httpx.AsyncClient`` and the :class:`~sync.client.engine.SyncEngine`; the cache is
either handed in (shared with the UI thread, which is what the cache is built
for) or opened by the thread from :attr:`SyncConfig.cache_path`. The UI thread
only calls the thread-safe :meth:`SyncThread.start`, :meth:`~SyncThread.stop`,
:meth:`~SyncThread.wake` and :meth:`~SyncThread.retry_now`; the listener's
callbacks run in the sync thread, so the desktop forwards them as Qt signals.

Signing in happens inside the sync thread, on its client, through the
:data:`SessionFactory` of the config (a password sign-in or a remembered one), and
lazily: a console started during an outage works offline and signs in when the
service answers, through the engine's ordinary retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from core.events import build_validators
from sync.client.api import SignedOut, SyncApi, TokenSource
from sync.client.auth import AuthSession, WrongCredentials
from sync.client.cache import LocalCache
from sync.client.connectivity import ConnectionState, SyncListener, SyncStats
from sync.client.credentials import CredentialStore, MemoryCredentialStore
from sync.client.engine import EngineSettings, SyncEngine
from sync.client.tls import client_verify

SessionFactory = Callable[[httpx.AsyncClient], Awaitable[TokenSource]]
"""Signs in on the sync thread's client and returns the session (an AuthSession)."""

START_TIMEOUT_S = 30.0


def password_sign_in(
    tenant: str,
    username: str,
    password: str,
    *,
    store: CredentialStore | None = None,
    remember: bool = False,
    device_id: str | None = None,
) -> SessionFactory:
    """A factory that signs in with a password (optionally for ``device_id``)."""

    async def sign_in(client: httpx.AsyncClient) -> TokenSource:
        session = AuthSession(client, store or MemoryCredentialStore())
        device = uuid.UUID(device_id) if device_id else None
        await session.login(tenant, username, password, remember=remember, device_id=device)
        return session

    return sign_in


def remembered_sign_in(tenant: str, username: str, store: CredentialStore) -> SessionFactory:
    """A factory that resumes the sign-in remembered in ``store`` (the OS keyring)."""

    async def sign_in(client: httpx.AsyncClient) -> TokenSource:
        session = AuthSession(client, store)
        await session.resume(tenant, username)
        return session

    return sign_in


@dataclass(frozen=True)
class SyncConfig:
    server_url: str
    tenant: str
    branch_id: str
    cache_path: Path
    session_factory: SessionFactory
    settings: EngineSettings = field(default_factory=EngineSettings)
    http_timeout_s: float = 15.0
    verify: bool | ssl.SSLContext = True  # TLS: True (system CAs), a context, or False
    trust_env: bool = True  # honour HTTPS_PROXY and friends
    api_attempts: int = 3


class _LazySession:
    """A :class:`TokenSource` that signs in on first use, once, on the sync loop."""

    def __init__(self, factory: SessionFactory, client: httpx.AsyncClient) -> None:
        self._factory, self._client = factory, client
        self._session: TokenSource | None = None
        self._lock = asyncio.Lock()

    async def _get(self) -> TokenSource:
        async with self._lock:
            if self._session is None:
                try:
                    self._session = await self._factory(self._client)
                except WrongCredentials as exc:
                    raise SignedOut(str(exc)) from exc
            return self._session

    async def access_token(self) -> str:
        return await (await self._get()).access_token()

    async def refresh(self, stale_access: str | None = None) -> str:
        return await (await self._get()).refresh(stale_access)


class SyncThread:
    """The sync engine on a thread of its own; see the module docstring."""

    def __init__(
        self,
        config: SyncConfig,
        listener: SyncListener | None = None,
        *,
        cache: LocalCache | None = None,
        name: str = "queuedesk-sync",
    ) -> None:
        self.config = config
        self.listener = listener or SyncListener()
        self._cache, self._owns_cache = cache, cache is None
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: SyncEngine | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    # -- controls (any thread) -------------------------------------------------------

    @property
    def cache(self) -> LocalCache:
        if self._cache is None:
            raise RuntimeError("the sync thread has not opened its cache yet: call start()")
        return self._cache

    @property
    def engine(self) -> SyncEngine:
        if self._engine is None:
            raise RuntimeError("the sync thread is not running: call start()")
        return self._engine

    @property
    def state(self) -> ConnectionState:
        return self.engine.state

    @property
    def stats(self) -> SyncStats:
        return self.engine.stats

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Start the thread; returns once the cache is open and the engine exists.

        Raises what opening the cache raised (e.g. :class:`~sync.client.errors.SchemaTooNew`).
        """
        if self._thread is not None:
            raise RuntimeError("SyncThread already started")
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError(f"the sync thread did not start within {START_TIMEOUT_S} s")
        if self._failure is not None:
            self._thread.join()
            self._thread = None
            raise self._failure
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop syncing and end the thread; False if it has not ended after ``timeout``."""
        thread = self._thread
        if thread is None:
            return True
        if self._engine is not None:
            self._engine.stop()
        thread.join(timeout)
        if thread.is_alive():
            return False
        self._thread = None
        return True

    def wake(self) -> None:
        """Sync soon (a command committed); the cache calls this by itself."""
        if self._engine is not None:
            self._engine.wake()

    def retry_now(self) -> None:
        if self._engine is not None:
            self._engine.retry_now()

    def wait_idle(self, timeout: float) -> None:
        """Block until the engine is idle (outbox empty, pulled to the head)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the sync thread is not running")
        future = asyncio.run_coroutine_threadsafe(self.engine.wait_idle(timeout), loop)
        try:
            future.result(timeout + 5.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the sync thread was not idle after {timeout} s") from None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the thread --------------------------------------------------------------------

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._run())
        except BaseException as exc:
            self._failure = self._failure or exc
        finally:
            self._ready.set()  # a failure before the engine existed must not hang start()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                self._loop = None
                loop.close()
                asyncio.set_event_loop(None)

    async def _run(self) -> None:
        config = self.config
        if self._cache is None:
            self._cache = LocalCache.open(config.cache_path, config.branch_id)
        try:
            async with httpx.AsyncClient(
                base_url=config.server_url,
                timeout=config.http_timeout_s,
                verify=client_verify(config.verify, config.server_url),
                trust_env=config.trust_env,
            ) as client:
                session = _LazySession(config.session_factory, client)
                api = SyncApi(client, session, attempts=config.api_attempts)
                self._engine = SyncEngine(
                    self._cache,
                    api,
                    config.branch_id,
                    self.listener,
                    settings=config.settings,
                )
                self._ready.set()
                build_validators()  # here, not in the UI thread: before the first pull
                await self._engine.run()
        finally:
            if self._owns_cache:
                self._cache.close()
