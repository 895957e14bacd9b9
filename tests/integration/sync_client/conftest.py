"""Fixtures for the sync client against a real ``queuedesk-server serve`` on 127.0.0.1.

The server runs on a fresh SQLite copy of the migrated template (the client does
not care which database the server uses), seeded with the tenant of
``tests/server/api_support.py`` and one service ("B") at its main branch. A test
sets server settings by parametrizing ``server_settings`` with
``{"access_token_ttl_s": 120}`` and the like; they reach the server process as
``QUEUEDESK_*`` environment variables.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from server.config import sqlite_url
from server.db import make_engine, make_session_factory, session_scope
from server.services import tenants
from tests.server import live
from tests.server.api_support import seed
from tests.server.conftest import _isolated_settings, sqlite_template

__all__ = ["_isolated_settings", "sqlite_template"]  # fixtures, re-used from the server tests


@dataclass(frozen=True)
class Server:
    base_url: str
    ids: dict[str, uuid.UUID]


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """Server settings of a test; parametrize this name to change them."""
    return {}


@pytest.fixture
def server(
    sqlite_template: Path,
    tmp_path: Path,
    server_settings: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Server]:
    path = tmp_path / "server.db"
    shutil.copyfile(sqlite_template, path)
    engine = make_engine(sqlite_url(path))
    try:
        factory = make_session_factory(engine)
        ids = seed(factory)
        with session_scope(factory) as session:
            service = tenants.create_service(session, ids["tenant_id"], ids["branch_id"], "B", "B")
            ids["service_id"] = service.id
    finally:
        engine.dispose()
    for name, value in server_settings.items():
        monkeypatch.setenv(f"QUEUEDESK_{name.upper()}", str(value))
    with live.serve(sqlite_url(path), tmp_path) as running:
        yield Server(running.base_url, ids)


@pytest.fixture
def calls() -> list[str]:
    """The paths ``client`` requested, in order."""
    return []


@pytest_asyncio.fixture
async def client(server: Server, calls: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    """One long-lived client, as the sync thread keeps; it notes its paths in ``calls``."""

    async def note(request: httpx.Request) -> None:
        calls.append(request.url.path)

    # trust_env=False: an HTTP(S)_PROXY in the environment must not reroute 127.0.0.1.
    async with httpx.AsyncClient(
        base_url=server.base_url,
        timeout=10.0,
        trust_env=False,
        event_hooks={"request": [note]},
    ) as http:
        yield http
