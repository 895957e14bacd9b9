"""Creating tenants, users and branch set-up; the demo tenant and its commands."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import InvalidValue
from server.cli import main
from server.db import session_scope
from server.models import Counter, PauseReason, Service, User, UserRole
from server.security.passwords import PasswordPolicyError, verify_password
from server.services import audit, tenants
from server.services.errors import Conflict

PASSWORD = "correct horse battery"


@pytest.mark.parametrize("slug", ["a", "Acme", "acme_bank", "ac me", "x" * 64, "ünï"])
def test_bad_slugs_are_refused(session_factory: sessionmaker[Session], slug: str) -> None:
    with session_scope(session_factory) as session, pytest.raises(InvalidValue, match="slug"):
        tenants.create_tenant(session, slug, "Acme")


def test_user_creation_is_validated(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        tenant = tenants.create_tenant(session, "acme", "Acme")
        with pytest.raises(Conflict):
            tenants.create_tenant(session, "acme", "Acme again")
        with pytest.raises(PasswordPolicyError):
            tenants.create_user(session, tenant, "anna", "short")
        with pytest.raises(InvalidValue, match="no role named 'wizard'"):
            tenants.create_user(session, tenant, "anna", PASSWORD, roles=[("wizard", None)])
        with pytest.raises(InvalidValue, match="username"):
            tenants.create_user(session, tenant, "an na", PASSWORD)
        tenants.create_user(session, tenant, "Anna", PASSWORD, roles=[("tenant_admin", None)])
        with pytest.raises(Conflict, match="case does not matter"):
            tenants.create_user(session, tenant, "aNNA", PASSWORD)


def test_branch_set_up_is_validated(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        tenant = tenants.create_tenant(session, "acme", "Acme")
        with pytest.raises(InvalidValue, match="time_zone"):
            tenants.create_branch(session, tenant.id, "Main", "MAIN", "+02:00")
        branch = tenants.create_branch(session, tenant.id, "Main", "main", "Europe/Berlin")
        assert branch.code == "MAIN"
        other = tenants.create_branch(session, tenant.id, "Side", "SIDE", "Europe/Berlin")
        with pytest.raises(Conflict):
            tenants.create_branch(session, tenant.id, "Main 2", "MAIN", "Europe/Berlin")
        with pytest.raises(InvalidValue, match="service_code"):
            tenants.create_service(session, tenant.id, branch.id, "A1", "Accounts")
        with pytest.raises(InvalidValue, match="target_wait_s"):
            tenants.create_service(session, tenant.id, branch.id, "A", "Accounts", target_wait_s=0)
        elsewhere = tenants.create_service(session, tenant.id, other.id, "A", "Accounts")
        with pytest.raises(InvalidValue, match="no such service at this branch"):
            tenants.create_counter(session, tenant.id, branch.id, 1, "Desk 1", [elsewhere.id])


def _counts(session: Session, tenant_id: uuid.UUID) -> dict[str, int]:
    return {
        model.__name__: session.scalar(
            select(func.count()).select_from(model).where(model.tenant_id == tenant_id)
        )
        or 0
        for model in (Service, Counter, PauseReason, User, UserRole)
    }


def test_demo_is_created_once_and_reused_with_new_passwords(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        first = tenants.ensure_demo(session)
        counts = _counts(session, first.tenant_id)
    assert counts == {"Service": 3, "Counter": 3, "PauseReason": 4, "User": 4, "UserRole": 4}
    with session_scope(session_factory) as session:
        second = tenants.ensure_demo(session)
        assert _counts(session, second.tenant_id) == counts
        admin = session.scalars(
            select(User).where(User.tenant_id == second.tenant_id, User.username == "admin")
        ).one()
        [(_, report)] = audit.verify(session, second.tenant_id)
    assert (second.tenant_id, second.branch_id) == (first.tenant_id, first.branch_id)
    assert set(second.users) == {"admin", "manager", "staff1", "staff2"}
    assert all(second.users[name] != first.users[name] for name in first.users)
    assert verify_password(admin.password_hash, second.users["admin"])
    assert admin.token_version == 1  # the old password's sessions ended
    assert report.ok


def test_demo_json_migrates_first_and_prints_one_object(empty_db_url: str) -> None:
    def run() -> dict[str, object]:
        result = subprocess.run(
            [sys.executable, "-m", "server", "demo", "--json", "--database-url", empty_db_url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        document: dict[str, object] = json.loads(result.stdout)  # exactly one JSON value
        return document

    first, second = run(), run()
    assert set(first) == {"tenant", "users", "branch_id"}
    assert first["tenant"] == "demo"
    assert isinstance(first["users"], dict)
    assert set(first["users"]) == {"admin", "manager", "staff1", "staff2"}
    assert second["branch_id"] == first["branch_id"]
    uuid.UUID(str(first["branch_id"]))


def test_create_tenant_and_user_commands(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*args: str, stdin: str = f"{PASSWORD}\n") -> int:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        return main([*args, "--database-url", db_url])

    assert (
        run("create-tenant", "acme", "--name", "Acme", "--admin", "boss", "--password-stdin") == 0
    )
    uuid.UUID(capsys.readouterr().out.strip())
    status = run("create-tenant", "acme", "--name", "Acme", "--admin", "boss", "--password-stdin")
    assert status == 2
    assert (
        capsys.readouterr().err.strip() == "queuedesk-server: error: a tenant 'acme' already exists"
    )
    assert (
        run("create-user", "acme", "Boss", "--role", "staff", "--branch", "x", "--password-stdin")
        == 2
    )
    assert "not a branch id" in capsys.readouterr().err
    assert run("create-user", "acme", "BOSS", "--role", "tenant_admin", "--password-stdin") == 2
    assert "case does not matter" in capsys.readouterr().err
    # Typed twice at a prompt; a mismatch is refused.
    answers = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert run("create-user", "acme", "anna", "--role", "tenant_admin", stdin="") == 2
    assert "do not match" in capsys.readouterr().err
