"""Access tokens at a protected route: what is accepted, and everything that must get 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from server.cli import main
from server.models import User
from server.security.signing_keys import KeyRing
from tests.server.api_support import PASSWORD, World, forge_token, running_app, statements


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    with running_app(db_url) as world:
        yield world


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    decode = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))  # noqa: E731
    return decode(header), decode(payload), signature


def _assemble(header: dict[str, Any], payload: dict[str, Any], signature: str = "") -> str:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), signature]
    )


def _assert_401(world: World, token: str) -> None:
    response = world.client.get(
        "/api/v1/_probe/whoami", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    # One message for every cause.
    assert response.json()["detail"] == (
        "Authentication required: the credentials are missing, invalid or expired."
    )


def test_a_forged_token_with_nothing_changed_is_accepted(world: World) -> None:
    # The baseline every rejection below departs from by one change.
    assert world.whoami(forge_token(world)) == 200


def test_a_login_token_is_accepted_and_names_the_caller(world: World) -> None:
    token = world.login()["access_token"]
    response = world.client.get(
        "/api/v1/_probe/whoami", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.json()["user_id"] == str(world.admin_id)
    header, claims, _ = _segments(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == world.keyring().active.kid
    assert claims["tid"] == str(world.tenant_id)
    assert claims["sub"] == str(world.admin_id)
    assert claims["ver"] == 0
    assert claims["roles"] == ["tenant_admin"]
    assert claims["aud"] == "queuedesk"
    assert claims["exp"] - claims["iat"] <= 900


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("keep_signature", [False, True])
def test_alg_none_is_refused(world: World, alg: str, keep_signature: bool) -> None:
    header, payload, signature = _segments(forge_token(world))
    token = _assemble({**header, "alg": alg}, payload, signature if keep_signature else "")
    _assert_401(world, token)


def test_alg_none_without_kid_or_typ_is_refused(world: World) -> None:
    _, payload, _ = _segments(forge_token(world))
    _assert_401(world, _assemble({"alg": "none"}, payload))


@pytest.mark.parametrize("key_form", ["pem", "raw", "jwk_x"])
def test_hs256_signed_with_the_public_key_is_refused(world: World, key_form: str) -> None:
    public = world.keyring().active.public_key
    secrets = {
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
    }
    secrets["jwk_x"] = _b64(secrets["raw"]).encode()
    header, payload, _ = _segments(forge_token(world))
    signing_input = _assemble({**header, "alg": "HS256"}, payload)[:-1]
    mac = hmac.new(secrets[key_form], signing_input.encode(), hashlib.sha256).digest()
    _assert_401(world, f"{signing_input}.{_b64(mac)}")


@pytest.mark.parametrize("aud", ["other", "queuedesk-admin", "queue", ["queuedesk", "other"]])
def test_a_wrong_audience_is_refused(world: World, aud: Any) -> None:
    _assert_401(world, forge_token(world, aud=aud))


@pytest.mark.parametrize("iss", ["queuedes", "queue", "uedes", "queuedesk.evil", "", " queuedesk"])
def test_an_issuer_that_is_a_prefix_or_substring_or_extension_is_refused(
    world: World, iss: str
) -> None:
    _assert_401(world, forge_token(world, iss=iss))


def test_an_expired_token_is_refused(world: World) -> None:
    now = int(time.time())
    _assert_401(world, forge_token(world, iat=now - 900, nbf=now - 900, exp=now - 120))


def test_an_unknown_kid_is_refused(world: World) -> None:
    stranger = KeyRing.generate()
    _assert_401(world, forge_token(world, ring=stranger))
    _assert_401(world, forge_token(world, headers={"kid": "no-such-kid"}))


def test_unknown_kid_reloads_are_rate_limited(world: World) -> None:
    world.app.state.keys.min_reload_interval_s = 3600.0
    with statements(world.app.state.engine) as seen:
        for _ in range(3):
            _assert_401(world, forge_token(world, ring=KeyRing.generate()))
    assert not [sql for sql in seen if "signing_keys" in sql]


@pytest.mark.parametrize("crit", [["x-unknown"], [], "x-unknown", ["exp"]])
def test_a_crit_header_is_refused(world: World, crit: Any) -> None:
    _assert_401(world, forge_token(world, headers={"crit": crit, "x-unknown": True}))


def test_a_refresh_token_is_not_an_access_token(world: World) -> None:
    _assert_401(world, world.login()["refresh_token"])


def test_garbage_and_missing_credentials_are_refused(world: World) -> None:
    for token in ["", "a.b.c", "x" * 9000, forge_token(world) + "x"]:
        _assert_401(world, token)
    response = world.client.get("/api/v1/_probe/whoami")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    basic = world.client.get("/api/v1/_probe/whoami", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401


def test_a_token_for_another_tenant_or_unknown_user_is_refused(world: World) -> None:
    _assert_401(world, forge_token(world, tid=str(uuid.uuid4())))
    _assert_401(world, forge_token(world, user_id=uuid.uuid4()))
    _assert_401(world, forge_token(world, sub="not-a-uuid"))


def test_a_token_with_a_stale_version_is_refused(world: World) -> None:
    _assert_401(world, forge_token(world, ver=1))
    _assert_401(world, forge_token(world, ver=False))
    bare = forge_token(world)
    header, payload, _ = _segments(bare)
    payload.pop("ver")
    ring = world.keyring()
    _assert_401(world, jwt.encode(payload, ring.active.private_key, "EdDSA", headers=header))


def test_a_logged_out_token_is_refused(world: World) -> None:
    tokens = world.login()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert world.client.post("/api/v1/auth/logout", headers=auth).status_code == 204
    _assert_401(world, tokens["access_token"])


def test_a_disabled_users_token_is_refused(world: World) -> None:
    token = world.login()["access_token"]
    assert world.whoami(token) == 200
    with world.session() as session:
        user = session.get(User, world.admin_id)
        assert user is not None
        user.disabled = True
    _assert_401(world, token)
    _assert_401(world, forge_token(world, user_id=world.disabled_id))


def test_a_token_issued_before_a_password_change_is_refused(world: World) -> None:
    old = world.login()["access_token"]
    current = world.login()["access_token"]
    response = world.client.post(
        "/api/v1/auth/password",
        headers={"Authorization": f"Bearer {current}"},
        json={"old_password": PASSWORD, "new_password": "a new long passphrase"},
    )
    assert response.status_code == 204, response.text
    _assert_401(world, old)
    _assert_401(world, current)
    assert world.whoami(world.login(password="a new long passphrase")["access_token"]) == 200


# --- keys: JWKS and rotation ----------------------------------------------------


def test_jwks_lists_the_active_key_and_no_private_parts(world: World) -> None:
    response = world.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert [key["kid"] for key in keys] == [world.keyring().active.kid]
    assert set(keys[0]) == {"kty", "crv", "x", "kid", "use", "alg"}
    assert "max-age" in response.headers["cache-control"]


def test_rotation_needs_no_restart_and_old_tokens_keep_working(
    world: World, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old_kid = world.keyring().active.kid
    before = world.login()["access_token"]

    assert main(["keys", "rotate", "--database-url", db_url]) == 0
    new_kid = capsys.readouterr().out.strip()
    assert new_kid
    assert new_kid != old_kid
    ring = world.keyring()
    assert ring.active.kid == new_kid

    # A token signed by the new key (another server already switched) makes this
    # server reload at once; the rate limit is lifted so the test need not wait.
    world.app.state.keys.min_reload_interval_s = 0.0
    assert world.whoami(forge_token(world, ring=ring)) == 200
    kids = {key["kid"] for key in world.client.get("/.well-known/jwks.json").json()["keys"]}
    assert kids == {old_kid, new_kid}
    assert world.whoami(before) == 200
    header, _, _ = _segments(world.login()["access_token"])
    assert header["kid"] == new_kid
