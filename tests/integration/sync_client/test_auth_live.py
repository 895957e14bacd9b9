"""The auth session against a real server: sign in, rotation, sign out and failures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync.client.api import Offline, SignedOut, Throttled
from sync.client.auth import AuthSession, SessionState, WrongCredentials
from sync.client.credentials import (
    Account,
    InMemoryKeyring,
    KeyringCredentialStore,
    MemoryCredentialStore,
    verify_offline,
)
from tests.integration.sync_client.conftest import Server
from tests.server.api_support import PASSWORD, TENANT
from tests.server.live import free_port
from tests.support.faultproxy import FaultProxy

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]
REFRESH = "/api/v1/auth/refresh"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def no_sleep(_seconds: float) -> None:
    return None


async def authorized_status(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/api/v1/branches", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def raw_refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(REFRESH, json={"refresh_token": token})


def account(server: Server, username: str = "admin") -> Account:
    return Account.of(server.base_url, TENANT, username)


async def test_login_remembered_then_resumed_by_a_new_session(
    server: Server, client: httpx.AsyncClient, memory_keyring: InMemoryKeyring
) -> None:
    store = KeyringCredentialStore()
    session = AuthSession(client, store)

    user = await session.login(TENANT, "Admin", PASSWORD, remember=True)

    assert session.state is SessionState.SIGNED_IN
    assert user.username == "admin"
    assert user.id == server.ids["admin_id"]
    assert "users.view" in user.permissions
    assert {b.id for b in user.branches} == {server.ids["branch_id"], server.ids["other_branch_id"]}
    assert await authorized_status(client, await session.access_token()) == 200
    saved = store.get_refresh_token(account(server))
    assert saved is not None
    assert saved.startswith("qdr_")
    identity = verify_offline(store, account(server), PASSWORD, datetime.now(UTC))
    assert identity.user["username"] == "admin"
    assert identity.permissions == user.permissions

    resumed = AuthSession(client, KeyringCredentialStore())
    again = await resumed.resume(TENANT, "admin")

    assert again.id == user.id
    assert await authorized_status(client, await resumed.access_token()) == 200
    rotated = store.get_refresh_token(account(server))
    assert rotated is not None
    assert rotated != saved  # the rotation was written through at once


async def test_without_remember_nothing_is_kept(
    server: Server, client: httpx.AsyncClient, memory_keyring: InMemoryKeyring
) -> None:
    store = KeyringCredentialStore()
    await AuthSession(client, store).login(TENANT, "admin", PASSWORD, remember=True)
    await AuthSession(client, store).login(TENANT, "admin", PASSWORD, remember=False)
    assert memory_keyring.entries == {}
    with pytest.raises(SignedOut, match="no saved sign-in"):
        await AuthSession(client, store).resume(TENANT, "admin")


@pytest.mark.parametrize("server_settings", [{"refresh_grace_s": 0}])
async def test_refresh_rotates_and_the_old_refresh_token_is_refused(
    server: Server, client: httpx.AsyncClient, memory_keyring: InMemoryKeyring
) -> None:
    store = KeyringCredentialStore()
    session = AuthSession(client, store)
    await session.login(TENANT, "admin", PASSWORD, remember=True)
    first_access, old_refresh = (
        await session.access_token(),
        store.get_refresh_token(account(server)),
    )
    assert old_refresh is not None

    new_access = await session.refresh()

    assert new_access != first_access
    assert await authorized_status(client, new_access) == 200
    assert store.get_refresh_token(account(server)) not in (None, old_refresh)
    reused = await raw_refresh(client, old_refresh)
    assert reused.status_code == 401
    # Reuse revoked the whole family: the session's own refresh now fails too.
    with pytest.raises(SignedOut, match="sign in again"):
        await session.refresh()
    assert session.state is SessionState.SIGNED_OUT
    assert store.get_refresh_token(account(server)) is None
    with pytest.raises(SignedOut):
        await session.access_token()


async def test_a_token_rotated_behind_the_session_is_honoured_within_grace(
    server: Server, client: httpx.AsyncClient
) -> None:
    """The server rotated but the session never saw the answer: the retry still works."""
    store = MemoryCredentialStore()
    session = AuthSession(client, store)
    await session.login(TENANT, "admin", PASSWORD, remember=True)
    stale, token = await session.access_token(), store.get_refresh_token(account(server))
    assert token is not None
    lost = await raw_refresh(client, token)  # rotated on the server, "lost" on the way back
    assert lost.status_code == 200

    fresh = await session.refresh()

    assert fresh not in (stale, lost.json()["access_token"])
    assert await authorized_status(client, fresh) == 200


async def test_a_refresh_answer_lost_in_the_network_is_recovered(server: Server) -> None:
    """The fault proxy lets the server rotate and then resets the connection."""
    port = int(server.base_url.rsplit(":", 1)[1])
    refreshes: list[str] = []

    async def note(request: httpx.Request) -> None:
        if request.url.path == REFRESH:
            refreshes.append(request.content.decode())

    with FaultProxy("127.0.0.1", port) as proxy:
        async with httpx.AsyncClient(
            base_url=proxy.url, trust_env=False, timeout=10.0, event_hooks={"request": [note]}
        ) as client:
            session = AuthSession(client, MemoryCredentialStore(), sleep=no_sleep)
            await session.login(TENANT, "admin", PASSWORD)
            stale = await session.access_token()
            proxy.drop_responses(1)

            fresh = await session.refresh()

            assert proxy.stats().responses_dropped == 1
            assert len(refreshes) == 2
            assert refreshes[0] == refreshes[1]  # the retry presented the same refresh token
            assert fresh != stale
            assert await authorized_status(client, fresh) == 200


async def test_logout_ends_the_session_here_and_on_the_server(
    server: Server, client: httpx.AsyncClient, memory_keyring: InMemoryKeyring
) -> None:
    store = KeyringCredentialStore()
    session = AuthSession(client, store)
    await session.login(TENANT, "admin", PASSWORD, remember=True)
    access, refresh = await session.access_token(), store.get_refresh_token(account(server))
    assert refresh is not None

    assert await session.logout() is True

    assert session.state is SessionState.SIGNED_OUT
    assert store.get_refresh_token(account(server)) is None
    assert store.get_verifier(account(server)) is not None  # offline unlock still works
    assert await authorized_status(client, access) == 401
    assert (await raw_refresh(client, refresh)).status_code == 401
    with pytest.raises(SignedOut):
        await session.access_token()


async def test_a_wrong_password_says_so(server: Server, client: httpx.AsyncClient) -> None:
    session = AuthSession(client, MemoryCredentialStore())
    with pytest.raises(WrongCredentials) as refused:
        await session.login(TENANT, "admin", "not the password")
    assert str(refused.value) == "The tenant, username or password is not correct."
    assert session.state is SessionState.SIGNED_OUT


async def test_repeated_failures_are_throttled_with_a_wait(
    server: Server, client: httpx.AsyncClient
) -> None:
    session = AuthSession(client, MemoryCredentialStore())
    throttled: Throttled | None = None
    for _ in range(20):  # the delays double from the 4th failure: a 429 comes quickly
        try:
            await session.login(TENANT, "admin", "not the password")
        except WrongCredentials:
            continue
        except Throttled as exc:
            throttled = exc
            break
    assert throttled is not None
    assert throttled.retry_after is not None
    assert throttled.retry_after >= 1
    assert str(throttled).startswith("Too many failed sign-ins; try again later (about ")


async def test_an_unreachable_server_says_so() -> None:
    port = free_port()  # bound, then closed: nothing listens there
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
        session = AuthSession(client, MemoryCredentialStore())
        with pytest.raises(Offline) as failed:
            await session.login(TENANT, "admin", PASSWORD)
    assert str(failed.value) == (
        "Cannot reach the QueueDesk server at 127.0.0.1: the connection was refused "
        "or the address is unknown. Working offline."
    )


@pytest.mark.parametrize("server_settings", [{"access_token_ttl_s": 120}])
async def test_the_access_token_is_refreshed_a_minute_before_expiry(
    server: Server, client: httpx.AsyncClient, calls: list[str]
) -> None:
    clock = Clock()
    session = AuthSession(client, MemoryCredentialStore(), clock=clock)
    await session.login(TENANT, "admin", PASSWORD)
    first = await session.access_token()

    clock.now += 120 - 60 - 1
    assert await session.access_token() == first
    assert REFRESH not in calls

    clock.now += 2
    second = await session.access_token()

    assert second != first
    assert calls.count(REFRESH) == 1
    assert await authorized_status(client, second) == 200
    assert await session.access_token() == second  # fresh again: no second refresh
    assert calls.count(REFRESH) == 1


async def test_concurrent_callers_share_one_rotation(
    server: Server, client: httpx.AsyncClient, calls: list[str]
) -> None:
    clock = Clock()
    session = AuthSession(client, MemoryCredentialStore(), clock=clock)
    await session.login(TENANT, "admin", PASSWORD)
    first = await session.access_token()
    clock.now += 10_000  # long past expiry

    tokens = await asyncio.gather(*(session.access_token() for _ in range(10)))

    assert len(set(tokens)) == 1
    assert tokens[0] != first
    assert calls.count(REFRESH) == 1
    assert await authorized_status(client, tokens[0]) == 200
    # A 401 path asking to refresh the already replaced token does not rotate again.
    assert await session.refresh(stale_access=first) == tokens[0]
    assert calls.count(REFRESH) == 1


def _files_containing(root: Path, secrets: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {s[:8]!r}..." for s in secrets if s in data]
    return found


async def test_no_secret_reaches_a_file_in_home(
    server: Server,
    memory_keyring: InMemoryKeyring,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    for name, sub in {
        "HOME": "",
        "XDG_CONFIG_HOME": ".config",
        "XDG_DATA_HOME": ".local/share",
        "XDG_CACHE_HOME": ".cache",
        "XDG_STATE_HOME": ".local/state",
        "XDG_RUNTIME_DIR": "run",
    }.items():
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(home / sub))
    monkeypatch.chdir(home)
    seen: list[str] = []

    async def note(response: httpx.Response) -> None:
        await response.aread()
        if response.url.path.startswith("/api/v1/auth/"):
            body: Any = response.json() if response.content else {}
            seen.extend(body[k] for k in ("access_token", "refresh_token") if k in body)

    async with httpx.AsyncClient(
        base_url=server.base_url, trust_env=False, event_hooks={"response": [note]}
    ) as client:
        session = AuthSession(client, KeyringCredentialStore())
        await session.login(TENANT, "admin", PASSWORD, remember=True)
        await session.refresh()
        await AuthSession(client, KeyringCredentialStore()).resume(TENANT, "admin")

    assert len(seen) == 6  # three pairs: login, refresh, resume
    stored = set(memory_keyring.entries.values())
    assert any(s in stored for s in seen)  # the keyring did receive the live refresh token
    secrets = [PASSWORD.encode(), *(s.encode() for s in seen)]
    assert _files_containing(home, secrets) == []
    # The scan itself finds a secret where there is one.
    (tmp_path / "leak").mkdir()
    (tmp_path / "leak" / "x.bin").write_bytes(b"..." + secrets[-1] + b"...")
    assert len(_files_containing(tmp_path / "leak", secrets)) == 1
