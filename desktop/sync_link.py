"""Starting the background sync thread for a branch, with the UI's one session.

The console keeps a single :class:`~sync.client.auth.AuthSession` (on the UI
thread's loop, see :mod:`desktop.session`): two sessions rotating one remembered
refresh token would present a retired token and end the whole family. The sync
thread therefore gets :class:`UiTokens`, a token source that asks the UI loop
for tokens across threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

from desktop.bridge import SyncBridge
from desktop.session import Authenticator
from sync.client.api import TokenSource
from sync.client.cache import LocalCache
from sync.client.engine import EngineSettings
from sync.client.thread import SyncConfig, SyncThread

_T = TypeVar("_T")


class UiTokens:
    """A :class:`~sync.client.api.TokenSource` for the sync thread, served by the UI loop."""

    def __init__(self, auth: Authenticator, ui_loop: asyncio.AbstractEventLoop) -> None:
        self._auth, self._ui_loop = auth, ui_loop

    async def access_token(self) -> str:
        return await self._on_ui(self._auth.access_token())

    async def refresh(self, stale_access: str | None = None) -> str:
        return await self._on_ui(self._auth.refresh(stale_access))

    async def _on_ui(self, call: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(call, self._ui_loop)
        return await asyncio.wrap_future(future)


def start_sync(
    auth: Authenticator,
    cache: LocalCache,
    bridge: SyncBridge,
    *,
    server_url: str,
    tenant: str,
    branch_id: str,
    settings: EngineSettings | None = None,
) -> SyncThread:
    """Start syncing ``cache`` in a background thread; returns once it runs."""
    ui_loop = asyncio.get_event_loop()
    tokens = UiTokens(auth, ui_loop)

    async def session_factory(_client: httpx.AsyncClient) -> TokenSource:
        return tokens

    config = SyncConfig(
        server_url=server_url,
        tenant=tenant,
        branch_id=branch_id,
        cache_path=Path(cache.path),
        session_factory=session_factory,
        settings=settings or EngineSettings(),
    )
    return SyncThread(config, bridge.listener(), cache=cache).start()
