"""The audit service: appending to the hash chain, verifying it, listing it."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from server.cli import main
from server.db import session_scope
from server.models import AuditLog, Tenant
from server.security.audit_chain import GENESIS_HASH, ChainReport
from server.services import audit

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _tenant(factory: sessionmaker[Session], slug: str = "acme") -> uuid.UUID:
    with session_scope(factory) as session:
        tenant = Tenant(slug=slug, name=slug.title())
        session.add(tenant)
        session.flush()
        return tenant.id


def _append(factory: sessionmaker[Session], tenant_id: uuid.UUID, count: int) -> list[int]:
    with session_scope(factory) as session:
        rows = [
            audit.record(
                session,
                tenant_id=tenant_id,
                action=f"thing.done{n}",
                actor_type="user",
                actor_id=f"user-{n % 2}",
                object_type="thing",
                object_id=str(n),
                reason=f"because {n}",
                details={"n": n},
                at=T0 + timedelta(minutes=n),
            )
            for n in range(count)
        ]
        return [row.id for row in rows]


def _verify(factory: sessionmaker[Session], tenant_id: uuid.UUID) -> ChainReport:
    with session_scope(factory) as session:
        [(tid, report)] = audit.verify(session, tenant_id)
    assert tid == tenant_id
    return report


def test_records_chain_and_verify(session_factory: sessionmaker[Session]) -> None:
    tenant_id = _tenant(session_factory)
    other = _tenant(session_factory, "other")
    _append(session_factory, tenant_id, 3)
    _append(session_factory, other, 2)
    with session_scope(session_factory) as session:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.tenant_id == tenant_id).order_by(AuditLog.seq)
        ).all()
        assert [r.seq for r in rows] == [1, 2, 3]
        assert rows[0].prev_hash == GENESIS_HASH
        assert [r.prev_hash for r in rows[1:]] == [r.row_hash for r in rows[:-1]]
        reports = dict(audit.verify(session))
    assert set(reports) == {tenant_id, other}
    assert all(report.ok for report in reports.values())
    assert reports[tenant_id].reason == "3 rows intact"


def test_list_entries_pages_newest_first_with_filters(
    session_factory: sessionmaker[Session],
) -> None:
    tenant_id = _tenant(session_factory)
    _append(session_factory, tenant_id, 5)
    with session_scope(session_factory) as session:
        page, cursor = audit.list_entries(session, tenant_id, limit=2)
        assert [r.seq for r in page] == [5, 4]
        page, cursor = audit.list_entries(session, tenant_id, limit=2, cursor=cursor)
        assert [r.seq for r in page] == [3, 2]
        page, cursor = audit.list_entries(session, tenant_id, limit=2, cursor=cursor)
        assert ([r.seq for r in page], cursor) == ([1], None)
        mine, _ = audit.list_entries(session, tenant_id, actor_id="user-1")
        assert [r.seq for r in mine] == [4, 2]
        window, _ = audit.list_entries(
            session, tenant_id, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)
        )
        assert [r.seq for r in window] == [3, 2]
        assert audit.list_entries(session, uuid.uuid4()) == ([], None)


def _tamper(engine: Engine, kind: str, ids: list[int]) -> None:
    """Change stored rows behind the service's back, as someone with database access."""
    with engine.begin() as conn:
        if kind == "edit":
            conn.execute(
                text("UPDATE audit_log SET reason = 'nothing' WHERE id = :id"), {"id": ids[1]}
            )
        elif kind == "delete":
            conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": ids[1]})
        else:  # swap seq 2 and 3 (through -1: seq is unique per tenant)
            update = text("UPDATE audit_log SET seq = :seq WHERE id = :id")
            conn.execute(update, {"seq": -1, "id": ids[1]})
            conn.execute(update, {"seq": 2, "id": ids[2]})
            conn.execute(update, {"seq": 3, "id": ids[1]})


@pytest.mark.parametrize("kind", ["edit", "delete", "swap"])
def test_tampering_is_reported_at_the_first_touched_seq(
    kind: str, db_url: str, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    tenant_id = _tenant(session_factory)
    _tenant(session_factory, "clean")
    ids = _append(session_factory, tenant_id, 4)
    _tamper(engine, kind, ids)
    report = _verify(session_factory, tenant_id)
    assert (report.ok, report.first_broken_seq) == (False, 2)

    cli = subprocess.run(
        [sys.executable, "-m", "server", "audit", "verify", "--database-url", db_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 1, cli.stderr
    [line] = cli.stdout.strip().splitlines()  # the untouched tenant is not reported
    assert line.startswith("audit chain broken: tenant acme at seq 2: ")


def test_cli_reports_an_intact_chain(
    db_url: str, session_factory: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    _append(session_factory, _tenant(session_factory), 3)
    _append(session_factory, _tenant(session_factory, "other"), 2)
    assert main(["audit", "verify", "--database-url", db_url]) == 0
    assert capsys.readouterr().out.startswith("audit chain intact: 5 rows")
    assert main(["audit", "verify", "--tenant", "other", "--database-url", db_url]) == 0
    assert capsys.readouterr().out.startswith("audit chain intact: 2 rows")
    assert main(["audit", "verify", "--tenant", "nope", "--database-url", db_url]) == 2
    assert capsys.readouterr().err.strip() == "queuedesk-server: error: no tenant 'nope'"


def test_line_breaks_cannot_forge_a_line(session_factory: sessionmaker[Session]) -> None:
    tenant_id = _tenant(session_factory)
    forged = "ok\nseq=99 action=user.deleted result=success\r\n"
    with session_scope(session_factory) as session:
        audit.record(
            session,
            tenant_id=tenant_id,
            action="user.login",
            result="failure",
            reason=forged,
            user_agent="curl\r\nX-Admin: 1",
            details={"note": forged, "items": ["a\nb"]},
        )
    with session_scope(session_factory) as session:
        row = session.scalars(select(AuditLog).where(AuditLog.tenant_id == tenant_id)).one()
    for value in (row.reason, row.user_agent, row.details["note"], row.details["items"][0]):
        assert value is not None
        assert "\n" not in value
        assert "\r" not in value
    assert row.reason == "ok\\nseq=99 action=user.deleted result=success\\r\\n"
    assert _verify(session_factory, tenant_id).ok


def test_secrets_in_details_are_redacted(session_factory: sessionmaker[Session]) -> None:
    tenant_id = _tenant(session_factory)
    details = {
        "password": "hunter2",
        "nested": {"Refresh-Token": "rt-secret", "kept": "visible"},
        "keys": [{"api_key": "qd_abc"}, {"Authorization": "Bearer xyz"}],
        "client_secret": "s3",
        "username": "anna",
    }
    with session_scope(session_factory) as session:
        audit.record(session, tenant_id=tenant_id, action="user.login", details=details)
    with session_scope(session_factory) as session:
        stored = session.scalars(select(AuditLog.details)).one()
    assert stored == {
        "password": "[redacted]",
        "nested": {"Refresh-Token": "[redacted]", "kept": "visible"},
        "keys": [{"api_key": "[redacted]"}, {"Authorization": "[redacted]"}],
        "client_secret": "[redacted]",
        "username": "anna",
    }
    assert _verify(session_factory, tenant_id).ok


def test_bad_arguments_are_refused(session_factory: sessionmaker[Session]) -> None:
    tenant_id = _tenant(session_factory)
    with session_scope(session_factory) as session:
        with pytest.raises(ValueError, match="result"):
            audit.record(session, tenant_id=tenant_id, action="x", result="maybe")
        with pytest.raises(ValueError, match="aware"):
            audit.record(session, tenant_id=tenant_id, action="x", at=datetime(2026, 1, 1))
        with pytest.raises(ValueError, match="limit"):
            audit.list_entries(session, tenant_id, limit=0)


def test_concurrent_appends_keep_one_valid_chain(
    session_factory: sessionmaker[Session],
) -> None:
    tenant_id = _tenant(session_factory)
    threads_n, per_thread = 4, 8
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                # One transaction per append, as request handlers do.
                with session_scope(session_factory) as session:
                    audit.record(session, tenant_id=tenant_id, action=f"w{n}.{i}")
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    report = _verify(session_factory, tenant_id)
    assert report.ok, report.reason
    assert report.reason == f"{threads_n * per_thread} rows intact"
