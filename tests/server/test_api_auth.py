"""``/api/v1/auth``: login, throttling, refresh rotation, logout and password change."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from server.models import AuditLog, LoginThrottle, RefreshToken, User
from server.security.passwords import needs_rehash
from tests.server.api_support import PASSWORD, TENANT, TestClient, World, running_app

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    with running_app(db_url) as world:
        yield world


def _refresh(world: World, token: str) -> Any:
    return world.client.post(REFRESH, json={"refresh_token": token})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _audit(world: World, action: str) -> list[AuditLog]:
    with world.session() as session:
        return list(
            session.scalars(
                select(AuditLog)
                .where(AuditLog.tenant_id == world.tenant_id, AuditLog.action == action)
                .order_by(AuditLog.seq)
            )
        )


# --- login ------------------------------------------------------------------------


def test_login_answers_the_documented_shape(world: World) -> None:
    body = world.login("staff1")
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 900
    assert body["refresh_token"].startswith("qdr_")
    user = body["user"]
    assert user["id"] == str(world.staff_id)
    assert user["username"] == "staff1"
    assert user["tenant"] == {"id": str(world.tenant_id), "slug": TENANT, "name": "Acme Bank"}
    assert "tickets.call" in user["permissions"]
    assert "users.manage" not in user["permissions"]
    # Staff work at their branch only.
    assert [b["id"] for b in user["branches"]] == [str(world.branch_id)]
    assert "tickets.call" in user["branches"][0]["permissions"]


def test_an_admin_sees_every_branch(world: World) -> None:
    branches = world.login()["user"]["branches"]
    assert {b["id"] for b in branches} == {str(world.branch_id), str(world.other_branch_id)}


def test_usernames_are_case_insensitive(world: World) -> None:
    assert world.login("ADMIN")["user"]["id"] == str(world.admin_id)


def test_login_failures_are_indistinguishable(world: World) -> None:
    attempts = [
        {"tenant": TENANT, "username": "admin", "password": "wrong password"},
        {"tenant": TENANT, "username": "nobody", "password": PASSWORD},
        {"tenant": "no-such-tenant", "username": "admin", "password": PASSWORD},
        {"tenant": TENANT, "username": "gone", "password": PASSWORD},  # disabled
    ]
    answers = [world.client.post(LOGIN, json=attempt) for attempt in attempts]
    assert {a.status_code for a in answers} == {401}
    assert len({a.content for a in answers}) == 1
    assert answers[0].json()["detail"] == "The tenant, username or password is not correct."
    headers = [{k: v for k, v in a.headers.items() if k != "date"} for a in answers]
    assert all(h == headers[0] for h in headers)


def test_login_is_audited_without_the_password(world: World) -> None:
    world.login()
    world.client.post(LOGIN, json={"tenant": TENANT, "username": "admin", "password": "nope-nope"})
    world.client.post(LOGIN, json={"tenant": TENANT, "username": "nobody", "password": "x"})
    rows = _audit(world, "auth.login")
    assert [(r.result, r.reason) for r in rows] == [
        ("success", None),
        ("failure", "wrong password"),
        ("failure", "unknown user"),
    ]
    assert rows[0].actor_type == "user"
    assert rows[0].actor_id == str(world.admin_id)
    assert rows[0].source_ip == "10.0.0.1"
    with world.session() as session:
        for row in session.scalars(select(AuditLog)):
            text = repr([getattr(row, c.key) for c in AuditLog.__table__.columns])
            assert PASSWORD not in text
            assert "nope-nope" not in text


def test_a_weak_stored_hash_is_upgraded_on_login(world: World) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    with world.session() as session:
        session.execute(update(User).where(User.id == world.staff_id).values(password_hash=weak))
    world.login("staff1")
    with world.session() as session:
        stored = session.scalars(select(User.password_hash).where(User.id == world.staff_id)).one()
    assert stored != weak
    assert not needs_rehash(stored)


def test_throttling_is_per_account_and_source(world: World) -> None:
    wrong = {"tenant": TENANT, "username": "admin", "password": "wrong password"}
    statuses = []
    for _ in range(8):
        response = world.client.post(LOGIN, json=wrong)
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[:4] == [401, 401, 401, 401]
    assert statuses[-1] == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["status"] == 429
    # The right password from the same source is refused too, without being checked.
    right = {"tenant": TENANT, "username": "admin", "password": PASSWORD}
    assert world.client.post(LOGIN, json=right).status_code == 429
    # Spelling the tenant or username differently does not make a new account.
    variant = {"tenant": " ACME ", "username": " Admin", "password": PASSWORD}
    assert world.client.post(LOGIN, json=variant).status_code == 429
    # A forwarded-for header does not make a new source.
    spoofed = world.client.post(LOGIN, json=right, headers={"X-Forwarded-For": "8.8.8.8"})
    assert spoofed.status_code == 429
    # The same account from elsewhere is not locked out, nor another account from here.
    elsewhere = TestClient(world.app, client=("1.2.3.4", 123))
    try:
        assert world.login(client=elsewhere)["user"]["id"] == str(world.admin_id)
    finally:
        elsewhere.close()
    assert world.login("staff1")["user"]["id"] == str(world.staff_id)
    assert ("denied", "throttled") in [(r.result, r.reason) for r in _audit(world, "auth.login")]


def test_a_success_clears_the_failure_count(world: World) -> None:
    world.client.post(LOGIN, json={"tenant": TENANT, "username": "admin", "password": "bad"})
    with world.session() as session:
        assert session.scalars(select(LoginThrottle)).all()
    world.login()
    with world.session() as session:
        assert not session.scalars(select(LoginThrottle)).all()


# --- refresh ------------------------------------------------------------------------


def test_refresh_rotates_the_token(world: World) -> None:
    first = world.login()
    response = _refresh(world, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert world.whoami(second["access_token"]) == 200
    assert _refresh(world, second["refresh_token"]).status_code == 200
    with world.session() as session:
        rows = session.scalars(select(RefreshToken).order_by(RefreshToken.created_at)).all()
    assert len({row.family_id for row in rows}) == 1
    assert [row.rotated_at is None for row in rows] == [False, False, True]
    assert rows[0].replaced_by_id == rows[1].id


def test_reuse_revokes_the_whole_family(db_url: str) -> None:
    with running_app(db_url, refresh_grace_s=0) as world:
        first = world.login()
        second = _refresh(world, first["refresh_token"]).json()
        replay = _refresh(world, first["refresh_token"])
        assert replay.status_code == 401
        # The thief's or the owner's newest token dies with the family.
        assert _refresh(world, second["refresh_token"]).status_code == 401
        rows = _audit(world, "auth.refresh_reuse")
        assert len(rows) == 1
        assert rows[0].result == "denied"
        with world.session() as session:
            assert all(r.revoked_at for r in session.scalars(select(RefreshToken)))


def test_a_replay_within_the_grace_window_continues_the_family(world: World) -> None:
    first = world.login()
    lost = _refresh(world, first["refresh_token"]).json()  # the client never saw this
    retry = _refresh(world, first["refresh_token"])
    assert retry.status_code == 200, retry.text
    pair = retry.json()
    assert pair["refresh_token"] not in (first["refresh_token"], lost["refresh_token"])
    assert world.whoami(pair["access_token"]) == 200
    assert _refresh(world, pair["refresh_token"]).status_code == 200
    assert not _audit(world, "auth.refresh_reuse")


def test_the_family_lifetime_is_absolute(world: World) -> None:
    first = world.login()
    second = _refresh(world, first["refresh_token"]).json()
    with world.session() as session:
        rows = session.scalars(select(RefreshToken)).all()
        assert len({row.family_expires_at for row in rows}) == 1  # rotation never extends it
        session.execute(
            update(RefreshToken).values(family_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert _refresh(world, second["refresh_token"]).status_code == 401


def test_refresh_refuses_unknown_and_disabled(world: World) -> None:
    assert _refresh(world, "qdr_" + "A" * 43).status_code == 401
    assert _refresh(world, "not-a-token").status_code == 401
    pair = world.login("staff1")
    with world.session() as session:
        session.execute(update(User).where(User.id == world.staff_id).values(disabled=True))
    response = _refresh(world, pair["refresh_token"])
    assert response.status_code == 401
    assert response.json()["type"] == "/problems/invalid-refresh-token"


# --- logout and password change -------------------------------------------------------


def test_logout_ends_the_access_token_and_that_family_only(world: World) -> None:
    kept, ended = world.login(), world.login()
    response = world.client.post(
        "/api/v1/auth/logout",
        headers=_bearer(ended["access_token"]),
        json={"refresh_token": ended["refresh_token"]},
    )
    assert response.status_code == 204
    assert world.whoami(ended["access_token"]) == 401
    assert _refresh(world, ended["refresh_token"]).status_code == 401
    assert _refresh(world, kept["refresh_token"]).status_code == 200
    assert _audit(world, "auth.logout")


def test_logout_without_a_refresh_token_ends_every_family(world: World) -> None:
    one, two = world.login(), world.login()
    response = world.client.post("/api/v1/auth/logout", headers=_bearer(one["access_token"]))
    assert response.status_code == 204
    assert _refresh(world, one["refresh_token"]).status_code == 401
    assert _refresh(world, two["refresh_token"]).status_code == 401


def test_logout_needs_authentication(world: World) -> None:
    assert world.client.post("/api/v1/auth/logout").status_code == 401


def test_password_change_checks_the_old_password_and_the_policy(world: World) -> None:
    pair = world.login()
    url, auth = "/api/v1/auth/password", _bearer(pair["access_token"])
    wrong = world.client.post(
        url, headers=auth, json={"old_password": "x", "new_password": "y" * 9}
    )
    assert wrong.status_code == 403
    weak = world.client.post(
        url, headers=auth, json={"old_password": PASSWORD, "new_password": "short"}
    )
    assert weak.status_code == 422
    assert world.whoami(pair["access_token"]) == 200  # nothing changed yet
    done = world.client.post(
        url, headers=auth, json={"old_password": PASSWORD, "new_password": "another good one"}
    )
    assert done.status_code == 204
    assert _refresh(world, pair["refresh_token"]).status_code == 401
    assert [r.result for r in _audit(world, "auth.password_change")] == ["failure", "success"]
