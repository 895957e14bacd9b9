"""Migrations: they build exactly the models' schema and keep existing data."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from server.db import make_engine
from server.migrate import context_options, current_revision, downgrade, head_revision, revisions
from server.migrate import upgrade as migrate_upgrade
from server.models import Base

Snapshot = dict[str, list[dict[str, Any]]]


def _schema_differences(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts=context_options(conn.dialect.name))
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    assert current_revision(db_url) == head_revision()
    assert _schema_differences(db_url) == []


def test_downgrade_to_base_then_upgrade_again(empty_db_url: str) -> None:
    assert current_revision(empty_db_url) is None
    assert migrate_upgrade(empty_db_url) == (None, head_revision())
    assert downgrade(empty_db_url, "base") == (head_revision(), None)
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    assert migrate_upgrade(empty_db_url) == (None, head_revision())
    assert _schema_differences(empty_db_url) == []


# --- data survives every upgrade step ------------------------------------------
#
# Each revision registers rows that are valid at that revision, written with
# lightweight table constructs (not the ORM models, which follow head), so the
# rows stay insertable when later revisions change the models.


def _column_type(value: object) -> sa.types.TypeEngine[Any] | None:
    if isinstance(value, uuid.UUID):
        return sa.Uuid()
    if isinstance(value, datetime):
        return sa.DateTime()
    if isinstance(value, date):
        return sa.Date()
    if isinstance(value, bool):
        return sa.Boolean()
    if isinstance(value, dict | list):
        return sa.JSON()
    return None


def _insert(conn: Connection, table: str, **values: Any) -> None:
    columns = [sa.column(name, _column_type(value)) for name, value in values.items()]
    conn.execute(sa.table(table, *columns).insert().values(**values))


def _rows_at_0001(conn: Connection) -> None:
    at = datetime(2026, 3, 2, 9, 30, 15, 123456)  # naive UTC, as stored
    day = date(2026, 3, 2)
    ids = {name: uuid.uuid4() for name in ("tenant", "branch", "service", "counter", "role")}
    ids |= {name: uuid.uuid4() for name in ("user", "device", "ticket", "event", "webhook")}
    tid, bid = ids["tenant"], ids["branch"]
    _insert(conn, "tenants", id=tid, slug="acme", name="Acme", created_at=at, disabled=False)
    _insert(
        conn, "branches", id=bid, tenant_id=tid, name="Main", code="MAIN",
        time_zone="Europe/Berlin", day_starts_at=0, created_at=at,
    )  # fmt: skip
    _insert(
        conn, "services", id=ids["service"], tenant_id=tid, branch_id=bid, code="A",
        name="Accounts", target_wait_s=600, active=True, created_at=at,
    )  # fmt: skip
    _insert(
        conn, "counters", id=ids["counter"], tenant_id=tid, branch_id=bid, name="Counter 1",
        number=1, work_profile=[str(ids["service"])], active=True, created_at=at,
    )  # fmt: skip
    _insert(conn, "pause_reasons", id=uuid.uuid4(), tenant_id=tid, label="Break", active=True)
    _insert(conn, "permissions", code="queue.view", description="See the queue")
    _insert(
        conn, "roles", id=ids["role"], tenant_id=tid, name="staff", description="",
        is_builtin=True,
    )  # fmt: skip
    _insert(conn, "role_permissions", role_id=ids["role"], permission_code="queue.view")
    _insert(
        conn, "users", id=ids["user"], tenant_id=tid, username="Ann", username_normalized="ann",
        display_name="Ann", email=None, password_hash="$argon2id$x", password_changed_at=at,
        disabled=False, token_version=0, created_at=at, last_login_at=None,
    )  # fmt: skip
    _insert(
        conn, "user_roles", id=uuid.uuid4(), tenant_id=tid, user_id=ids["user"],
        role_id=ids["role"], branch_id=bid,
    )  # fmt: skip
    _insert(
        conn, "devices", id=ids["device"], tenant_id=tid, branch_id=bid, name="Desk 1",
        kind="console", created_at=at, last_device_seq=1,
    )  # fmt: skip
    _insert(
        conn, "tickets", id=ids["ticket"], tenant_id=tid, branch_id=bid,
        service_id=ids["service"], number="A001", business_day=day, status="waiting",
        priority=0, channel="walk_in", issued_at=at, customer_name="Bo", updated_at=at,
    )  # fmt: skip
    _insert(
        conn, "queue_events", id=ids["event"], tenant_id=tid, branch_id=bid, server_seq=1,
        device_id=ids["device"], device_seq=1, type="ticket.issued", ticket_id=ids["ticket"],
        occurred_at=at, received_at=at, actor_user_id=ids["user"],
        payload={"number": "A001", "nested": {"n": [1, 2]}}, status="accepted",
    )  # fmt: skip
    _insert(conn, "branch_sequences", branch_id=bid, last_server_seq=1)
    _insert(
        conn, "number_leases", id=uuid.uuid4(), tenant_id=tid, branch_id=bid, prefix="A",
        business_day=day, first=1, last=50, device_id=ids["device"], created_at=at,
    )  # fmt: skip
    _insert(
        conn, "refresh_tokens", id=uuid.uuid4(), tenant_id=tid, user_id=ids["user"],
        family_id=uuid.uuid4(), token_hash="h" * 64, created_at=at, expires_at=at,
        family_expires_at=at, device_id=ids["device"], user_agent="test", ip="127.0.0.1",
    )  # fmt: skip
    _insert(conn, "revoked_tokens", jti="jti-1", tenant_id=tid, expires_at=at)
    _insert(
        conn, "signing_keys", kid="k1", algorithm="EdDSA", private_key_pem="-----BEGIN",
        public_jwk={"kty": "OKP", "crv": "Ed25519", "x": "abc"}, created_at=at,
    )  # fmt: skip
    _insert(
        conn, "login_throttles", key="k" * 64, failures=2, first_failure_at=at,
        last_failure_at=at,
    )  # fmt: skip
    _insert(
        conn, "api_keys", id=uuid.uuid4(), tenant_id=tid, user_id=ids["user"], name="kiosk",
        prefix="qd_abc", key_hash="a" * 64, scopes=["tickets.issue"], created_at=at,
    )  # fmt: skip
    _insert(
        conn, "audit_log", tenant_id=tid, seq=1, at=at, actor_type="user",
        actor_id=str(ids["user"]), action="user.login", result="success",
        details={"k": "v"}, prev_hash="0" * 64, row_hash="1" * 64,
    )  # fmt: skip
    _insert(
        conn, "notification_templates", id=uuid.uuid4(), tenant_id=tid, channel="sms",
        event="ticket.called", locale="en", body="{{ number }}", enabled=True,
        created_at=at, updated_at=at,
    )  # fmt: skip
    _insert(
        conn, "integrations", id=uuid.uuid4(), tenant_id=tid, kind="smtp", name="Mail",
        config={"host": "mail.example.org"}, secret_ref="env:SMTP", enabled=True,
        created_at=at, updated_at=at,
    )  # fmt: skip
    _insert(
        conn, "webhooks", id=ids["webhook"], tenant_id=tid, url="https://example.org/hook",
        description="", secret="whsec_abc", event_types=["ticket.called"], enabled=True,
        created_at=at, updated_at=at,
    )  # fmt: skip
    _insert(
        conn, "webhook_deliveries", id=uuid.uuid4(), tenant_id=tid, webhook_id=ids["webhook"],
        event_id=ids["event"], event_type="ticket.called", payload={"id": 1},
        status="pending", attempts=0, next_attempt_at=at, created_at=at,
    )  # fmt: skip
    _insert(
        conn, "alerts", id=uuid.uuid4(), tenant_id=tid, branch_id=bid, severity="warning",
        kind="sla", message="A is slow", details={}, created_at=at,
    )  # fmt: skip
    _insert(
        conn, "backups", id=uuid.uuid4(), tenant_id=None, name="b1", location="b1.tar",
        size_bytes=10, sha256="f" * 64, status="completed", created_at=at,
    )  # fmt: skip


def _rows_at_0002(conn: Connection) -> None:
    devices = sa.table(
        "devices", sa.column("tenant_id", sa.Uuid()), sa.column("branch_id", sa.Uuid())
    )
    tid, bid = conn.execute(sa.select(devices.c.tenant_id, devices.c.branch_id)).one()
    _insert(
        conn, "devices", id=uuid.uuid4(), tenant_id=tid, branch_id=bid, name="Desk 2",
        kind="console", created_at=datetime(2026, 3, 3, 8, 0), last_device_seq=0, slot=0,
    )  # fmt: skip


def _rows_at_0003(conn: Connection) -> None:
    """0003 adds an index only: the rows of earlier revisions must come through."""


def _rows_at_0004(conn: Connection) -> None:
    branches = sa.table("branches", sa.column("tenant_id", sa.Uuid()), sa.column("id", sa.Uuid()))
    tid, bid = conn.execute(sa.select(branches.c.tenant_id, branches.c.id)).one()
    _insert(
        conn, "kpi_facts", ticket_id=uuid.uuid4(), ord=0, tenant_id=tid, branch_id=bid,
        kind="issued", service_id="s1", local_day=date(2026, 3, 2), hour_start=1772438400,
        no_show=0,
    )  # fmt: skip
    _insert(conn, "kpi_fact_marks", branch_id=bid, through_seq=0, time_zone="Europe/Lisbon")


def _rows_at_0005(conn: Connection) -> None:
    branches = sa.table("branches", sa.column("tenant_id", sa.Uuid()), sa.column("id", sa.Uuid()))
    tid, bid = conn.execute(sa.select(branches.c.tenant_id, branches.c.id)).one()
    _insert(
        conn, "kpi_summaries", branch_id=bid, local_day=date(2026, 3, 2), service_id="s1",
        tenant_id=tid, issued=1, called=0, served=0, no_show=0, cancelled=0, abandoned=0,
        transfers=0, recalls=0, waits=b"", service_times=b"", served_hours=b"",
    )  # fmt: skip
    _insert(
        conn, "kpi_pauses", tenant_id=tid, branch_id=bid, counter_id="c1", staff_id=None,
        reason="Lunch", started_at=datetime(2026, 3, 2, 12, 0), ended_at=None,
        local_day=date(2026, 3, 2),
    )  # fmt: skip


# Add one entry per new revision: rows valid at that revision.
SAMPLE_ROWS: dict[str, Callable[[Connection], None]] = {
    "0001": _rows_at_0001,
    "0002": _rows_at_0002,
    "0003": _rows_at_0003,
    "0004": _rows_at_0004,
    "0005": _rows_at_0005,
}


def _snapshot(conn: Connection) -> Snapshot:
    metadata = sa.MetaData()
    metadata.reflect(conn)
    return {
        name: sorted((dict(row._mapping) for row in conn.execute(sa.select(table))), key=repr)
        for name, table in metadata.tables.items()
        if name != "alembic_version"
    }


def _assert_rows_kept(before: Snapshot, after: Snapshot) -> None:
    for table, rows in before.items():
        assert table in after, f"table {table} disappeared"
        kept = [{k: row[k] for k in rows[0] if k in row} for row in after[table]] if rows else []
        assert sorted(kept, key=repr) == rows, f"rows of {table} changed"


def _fill_and_snapshot(url: str, revision: str) -> Snapshot:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            SAMPLE_ROWS[revision](conn)
        with engine.connect() as conn:
            return _snapshot(conn)
    finally:
        engine.dispose()


def _read(url: str) -> Snapshot:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return _snapshot(conn)
    finally:
        engine.dispose()


def test_every_upgrade_step_keeps_existing_rows(empty_db_url: str) -> None:
    """Walk base -> head one revision at a time with rows from every earlier step.

    Rows written at revision N-1 must come through the upgrade to N unchanged;
    at head, migrating the populated database again must not touch them either.
    """
    all_revisions = revisions()
    assert set(SAMPLE_ROWS) == set(all_revisions), "add SAMPLE_ROWS for every revision"
    snapshot: Snapshot = {}
    for revision in all_revisions:
        migrate_upgrade(empty_db_url, revision)
        _assert_rows_kept(snapshot, _read(empty_db_url))
        snapshot = _fill_and_snapshot(empty_db_url, revision)
        assert all(snapshot.values()), "every table should hold a sample row"

    assert migrate_upgrade(empty_db_url) == (head_revision(), head_revision())
    after = _read(empty_db_url)
    _assert_rows_kept(snapshot, after)
    assert after == snapshot
