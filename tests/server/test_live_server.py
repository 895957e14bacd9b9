"""The real server over real HTTP: ``queuedesk-server serve`` in a process of its own."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from server.db import make_engine, make_session_factory, session_scope
from server.models import AuditLog
from tests.server import live
from tests.server.api_support import PASSWORD, TENANT, seed

live_server = live.live_server
pytestmark = pytest.mark.slow


def test_login_and_use_the_token_over_http(live_server: live.LiveServer) -> None:
    engine = make_engine(live_server.database_url)
    try:
        factory = make_session_factory(engine)
        ids = seed(factory)
        with httpx.Client(base_url=live_server.base_url, timeout=10.0) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            response = client.post(
                "/api/v1/auth/login",
                json={"tenant": TENANT, "username": "admin", "password": PASSWORD},
            )
            assert response.status_code == 200, response.text
            pair = response.json()
            assert pair["user"]["id"] == str(ids["admin_id"])
            kids = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
            assert len(kids) == 1
            refreshed = client.post(
                "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
            )
            assert refreshed.status_code == 200, refreshed.text
            logout = client.post(
                "/api/v1/auth/logout",
                headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"},
            )
            assert logout.status_code == 204
            metrics = client.get("/metrics").text
            assert 'route="/api/v1/auth/login",status="200"' in metrics
        with session_scope(factory) as session:
            actions = session.scalars(
                select(AuditLog.action).where(AuditLog.action.like("auth.%"))
            ).all()
        assert actions == ["auth.login", "auth.logout"]
    finally:
        engine.dispose()


def test_a_burst_of_concurrent_issues_is_queued_not_failed(live_server: live.LiveServer) -> None:
    """60 clients issue at once: every request succeeds and every number differs.

    This is what the request gate is for: without it the burst starves the worker
    threads, and SQLite answers "database is locked", PostgreSQL pool timeouts (500s).
    """
    import asyncio

    from server.services import tenants

    engine = make_engine(live_server.database_url)
    try:
        factory = make_session_factory(engine)
        ids = seed(factory)
        with session_scope(factory) as session:
            service = tenants.create_service(session, ids["tenant_id"], ids["branch_id"], "B", "B")
            service_id = str(service.id)
    finally:
        engine.dispose()
    with httpx.Client(base_url=live_server.base_url, timeout=10.0) as client:
        login = client.post(
            "/api/v1/auth/login",
            json={"tenant": TENANT, "username": "admin", "password": PASSWORD},
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

    async def issue() -> httpx.Response:
        async with httpx.AsyncClient(base_url=live_server.base_url, timeout=60.0) as client:
            return await client.post(
                f"/api/v1/branches/{ids['branch_id']}/tickets",
                json={"service_id": service_id, "channel": "walk_in"},
                headers=headers,
            )

    async def burst() -> list[httpx.Response]:
        return await asyncio.gather(*(issue() for _ in range(60)))

    responses = asyncio.run(burst())
    failed = [(r.status_code, r.text) for r in responses if r.status_code != 201]
    assert failed == []
    numbers = {r.json()["number"] for r in responses}
    assert len(numbers) == 60


def test_concurrent_first_failures_of_one_account_are_all_counted(
    live_server: live.LiveServer,
) -> None:
    """Wrong passwords for one account at once: each is a 401, none a 500, all counted.

    The first failure creates the account's throttle row; without serialising on
    its key, two concurrent first failures both insert it and one fails.
    """
    import asyncio

    from server.models import LoginThrottle

    engine = make_engine(live_server.database_url)
    try:
        factory = make_session_factory(engine)
        seed(factory)
        body = {"tenant": TENANT, "username": "admin", "password": "not the password"}

        async def attempt(client: httpx.AsyncClient) -> int:
            response = await client.post("/api/v1/auth/login", json=body)
            return response.status_code

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=live_server.base_url, timeout=30.0) as client:
                return await asyncio.gather(*(attempt(client) for _ in range(12)))

        statuses = asyncio.run(burst())
        assert set(statuses) <= {401, 429}, statuses
        assert 401 in statuses
        with session_scope(factory) as session:
            failures = session.scalars(select(LoginThrottle.failures)).all()
        assert len(failures) == 1, failures  # one row for the account and source
        assert failures[0] >= statuses.count(401), (failures, statuses)
    finally:
        engine.dispose()
