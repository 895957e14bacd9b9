"""API keys as credentials, permission checks with ``require``, and the ops endpoints."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from server.app import create_app
from server.config import Settings
from server.models import ApiKey, AuditLog
from server.security.api_keys import generate_api_key
from tests.server.api_support import TestClient, World, running_app, statements

WHOAMI = "/api/v1/_probe/whoami"


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    with running_app(db_url) as world:
        yield world


def _add_key(
    world: World,
    owner: uuid.UUID,
    scopes: list[str],
    *,
    expires_at: datetime | None = None,
    revoked: bool = False,
) -> str:
    new = generate_api_key()
    with world.session() as session:
        session.add(
            ApiKey(
                tenant_id=world.tenant_id,
                user_id=owner,
                name="integration",
                prefix=new.prefix,
                key_hash=new.key_hash,
                scopes=scopes,
                expires_at=expires_at,
                revoked_at=datetime.now(UTC) if revoked else None,
            )
        )
    return new.plaintext


def _get(world: World, path: str, key: str, *, header: str = "bearer") -> int:
    headers = {"X-API-Key": key} if header == "x-api-key" else {"Authorization": f"Bearer {key}"}
    return world.client.get(path, headers=headers).status_code


# --- API keys --------------------------------------------------------------------


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_a_valid_key_authenticates_as_its_owner(world: World, header: str) -> None:
    key = _add_key(world, world.admin_id, ["users.view"])
    headers = {"X-API-Key": key} if header == "x-api-key" else {"Authorization": f"Bearer {key}"}
    body = world.client.get(WHOAMI, headers=headers).json()
    assert body["actor_type"] == "api_key"
    assert body["user_id"] == str(world.admin_id)
    assert body["permissions"] == ["users.view"]
    with world.session() as session:
        stored = session.scalars(select(ApiKey)).one()
        assert stored.last_used_at is not None


def test_a_malformed_key_is_refused_before_any_lookup(world: World) -> None:
    key = _add_key(world, world.admin_id, ["users.view"])
    typo = key[:-1] + ("a" if key[-1] != "a" else "b")  # checksum no longer matches
    for bad in [typo, key[:-2], "qd_" + "!" * 36, "qd_"]:
        with statements(world.app.state.engine) as seen:
            assert _get(world, WHOAMI, bad) == 401
            assert _get(world, WHOAMI, bad, header="x-api-key") == 401
        assert not [sql for sql in seen if "api_keys" in sql]


def test_revoked_and_expired_keys_are_refused(world: World) -> None:
    revoked = _add_key(world, world.admin_id, ["users.view"], revoked=True)
    expired = _add_key(
        world, world.admin_id, ["users.view"], expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    unknown = generate_api_key().plaintext  # well-formed, never stored
    for key in (revoked, expired, unknown):
        assert _get(world, WHOAMI, key) == 401


def test_two_credentials_at_once_are_refused(world: World) -> None:
    key = _add_key(world, world.admin_id, ["users.view"])
    token = world.login()["access_token"]
    both = {"X-API-Key": key, "Authorization": f"Bearer {token}"}
    assert world.client.get(WHOAMI, headers=both).status_code == 401


def test_a_key_never_exceeds_its_owner(world: World) -> None:
    # Staff may view the queue at their branch but not list users; the key asks for both.
    key = _add_key(world, world.staff_id, ["queue.view", "users.view"])
    assert _get(world, f"/api/v1/_probe/branches/{world.branch_id}/queue", key) == 200
    assert _get(world, f"/api/v1/_probe/branches/{world.other_branch_id}/queue", key) == 403
    assert _get(world, "/api/v1/_probe/users", key) == 403
    # The administrator holds everything; a key scoped to users.view holds only that.
    admin_key = _add_key(world, world.admin_id, ["users.view"])
    assert _get(world, "/api/v1/_probe/users", admin_key) == 200
    assert _get(world, f"/api/v1/_probe/branches/{world.branch_id}/queue", admin_key) == 403


def test_a_disabled_owner_ends_the_key(world: World) -> None:
    key = _add_key(world, world.disabled_id, ["queue.view"])
    assert _get(world, WHOAMI, key) == 401


# --- require ----------------------------------------------------------------------


def test_denials_are_403_and_audited(world: World) -> None:
    token = world.login("staff1")["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert world.client.get("/api/v1/_probe/users", headers=auth).status_code == 403
    other = f"/api/v1/_probe/branches/{world.other_branch_id}/queue"
    assert world.client.get(other, headers=auth).status_code == 403
    own = f"/api/v1/_probe/branches/{world.branch_id}/queue"
    assert world.client.get(own, headers=auth).status_code == 200
    with world.session() as session:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.action == "authz.denied").order_by(AuditLog.seq)
        ).all()
    assert [(r.reason, r.result, r.actor_id) for r in rows] == [
        ("users.view", "denied", str(world.staff_id)),
        ("queue.view", "denied", str(world.staff_id)),
    ]
    assert rows[1].details["branch_id"] == str(world.other_branch_id)


# --- ops ------------------------------------------------------------------------


def test_health_and_readiness(world: World) -> None:
    assert world.client.get("/healthz").json() == {"status": "ok"}
    assert world.client.get("/readyz").json() == {"status": "ready"}


def test_not_ready_on_an_unmigrated_database(empty_db_url: str) -> None:
    with TestClient(create_app(Settings(database_url=empty_db_url))) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert "schema" in response.json()["detail"]


def test_metrics_count_requests_by_route_template(world: World) -> None:
    world.client.get("/healthz")
    world.client.get(f"/api/v1/_probe/branches/{world.branch_id}/queue")
    world.client.get("/no/such/path")
    text = world.client.get("/metrics").text
    assert 'queuedesk_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'route="/api/v1/_probe/branches/{branch_id}/queue",status="401"' in text
    assert 'route="unmatched",status="404"' in text
    assert str(world.branch_id) not in text
    assert "queuedesk_http_request_duration_seconds_bucket" in text


def test_an_unexpected_error_is_a_500_problem_without_details(world: World) -> None:
    response = world.client.get("/api/v1/_probe/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "An unexpected error occurred."
    assert "internal detail" not in response.text
