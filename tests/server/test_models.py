"""Models: time columns, and the constraints that keep the data consistent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import AwareDatetime, TypeAdapter
from sqlalchemy import DateTime, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from core.ids import uuid7
from server.db import session_scope
from server.models import (
    Branch,
    Device,
    Permission,
    QueueEvent,
    Role,
    Service,
    Tenant,
    Ticket,
    User,
    UserRole,
    UTCDateTime,
)

DAY = date(2026, 3, 2)
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class Seed:
    tenant_id: uuid.UUID
    branch_id: uuid.UUID
    service_id: uuid.UUID
    device_id: uuid.UUID


def _seed(factory: sessionmaker[Session], slug: str = "acme") -> Seed:
    with session_scope(factory) as session:
        tenant = Tenant(slug=slug, name=slug.title())
        session.add(tenant)
        session.flush()
        branch = Branch(tenant_id=tenant.id, name="Main", code="MAIN", time_zone="Europe/Berlin")
        session.add(branch)
        session.flush()
        service = Service(tenant_id=tenant.id, branch_id=branch.id, code="A", name="Accounts")
        device = Device(tenant_id=tenant.id, branch_id=branch.id, name="Desk 1")
        session.add_all([service, device])
        session.flush()
        return Seed(tenant.id, branch.id, service.id, device.id)


def _ticket(seed: Seed, number: str = "A001", day: date = DAY) -> Ticket:
    return Ticket(
        tenant_id=seed.tenant_id,
        branch_id=seed.branch_id,
        service_id=seed.service_id,
        number=number,
        business_day=day,
        issued_at=NOON,
    )


def _event(seed: Seed, **overrides: object) -> QueueEvent:
    values: dict[str, object] = {
        "id": uuid7(),
        "tenant_id": seed.tenant_id,
        "branch_id": seed.branch_id,
        "server_seq": 1,
        "type": "ticket.issued",
        "occurred_at": NOON,
        "payload": {"number": "A001"},
    }
    values.update(overrides)
    return QueueEvent(**values)


def _insert(factory: sessionmaker[Session], *rows: object) -> None:
    """Insert ``rows`` one by one in one transaction."""
    with session_scope(factory) as session:
        for row in rows:
            session.add(row)
            session.flush()


def _assert_refused(factory: sessionmaker[Session], *rows: object) -> None:
    with pytest.raises(IntegrityError):
        _insert(factory, *rows)


# --- UTCDateTime ---------------------------------------------------------------


def test_utc_datetime_refuses_naive_and_non_datetime_values() -> None:
    column_type = UTCDateTime()
    with pytest.raises(ValueError, match="naive"):
        column_type.process_bind_param(datetime(2026, 1, 1), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        column_type.process_bind_param("2026-01-01", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 1, 1, tzinfo=UTC),  # no microseconds: still written with six digits
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
        datetime(2026, 3, 2, 9, 30, 15, 5, tzinfo=timezone(timedelta(0))),  # at UTC, not UTC
        TypeAdapter(AwareDatetime).validate_python("2026-03-02T09:30:15.000001Z"),  # pydantic's
    ],
)
def test_utc_datetime_writes_sqlite_text_exactly_as_sqlalchemy_does(value: datetime) -> None:
    """The fast SQLite bind processor keeps SQLAlchemy's DATETIME text, so rows written
    either way sort and compare alike in SQL."""
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None
    assert theirs is not None
    assert ours(value) == theirs(value.astimezone(UTC).replace(tzinfo=None))
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive"):
        ours(value.replace(tzinfo=None))


def test_utc_datetime_sqlite_text_follows_each_value_not_the_one_before() -> None:
    """Repeated values, equal instants in other zones, other values and None each get
    their own text, in any order."""
    dialect = sqlite.dialect()
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    now = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)
    berlin = now.astimezone(timezone(timedelta(hours=1)))
    later = now + timedelta(microseconds=1)
    texts = [process(v) for v in (now, now, berlin, later, None, now, later, later)]
    first, next_ = "2026-03-02 09:30:15.123456", "2026-03-02 09:30:15.123457"
    assert texts == [first, first, first, next_, None, first, next_, next_]
    with pytest.raises(ValueError, match="naive"):
        process(now.replace(tzinfo=None))


def test_naive_datetime_is_refused_by_the_database_layer(
    session_factory: sessionmaker[Session],
) -> None:
    naive = Tenant(slug="naive", name="Naive", created_at=datetime(2026, 1, 1))
    with pytest.raises(StatementError, match="naive"):
        _insert(session_factory, naive)


def test_aware_datetimes_round_trip_as_utc(session_factory: sessionmaker[Session]) -> None:
    plus_two = timezone(timedelta(hours=2))
    written = datetime(2026, 7, 1, 14, 30, 15, 123456, tzinfo=plus_two)
    with session_scope(session_factory) as session:
        session.add(Tenant(slug="tz", name="TZ", created_at=written))
    with session_scope(session_factory) as session:
        read = session.scalars(select(Tenant.created_at).where(Tenant.slug == "tz")).one()
        earlier = session.scalars(
            select(Tenant.slug).where(Tenant.created_at < written + timedelta(microseconds=1))
        ).all()
    assert read == written
    assert read.tzinfo is UTC
    assert read.hour == 12
    assert earlier == ["tz"]


# --- uniqueness ----------------------------------------------------------------


def test_ticket_number_is_unique_per_branch_and_day(
    session_factory: sessionmaker[Session],
) -> None:
    seed = _seed(session_factory)
    with session_scope(session_factory) as session:
        session.add_all([_ticket(seed), _ticket(seed, day=DAY + timedelta(days=1))])
    _assert_refused(session_factory, _ticket(seed))


def test_event_id_is_unique(session_factory: sessionmaker[Session]) -> None:
    seed = _seed(session_factory)
    event_id = uuid7()
    with session_scope(session_factory) as session:
        session.add(_event(seed, id=event_id))
    _assert_refused(session_factory, _event(seed, id=event_id, server_seq=2))


def test_server_seq_is_unique_per_branch(session_factory: sessionmaker[Session]) -> None:
    seed = _seed(session_factory)
    _assert_refused(session_factory, _event(seed), _event(seed))


def test_device_seq_is_unique_per_device(session_factory: sessionmaker[Session]) -> None:
    seed = _seed(session_factory)
    _assert_refused(
        session_factory,
        _event(seed, device_id=seed.device_id, device_seq=1),
        _event(seed, device_id=seed.device_id, device_seq=1, server_seq=2),
    )


def test_rejected_events_need_no_server_seq_but_accepted_ones_do(
    session_factory: sessionmaker[Session],
) -> None:
    seed = _seed(session_factory)
    with session_scope(session_factory) as session:
        session.add_all(
            [
                _event(seed, server_seq=None, status="rejected", reason="already called"),
                _event(seed, server_seq=None, status="rejected", reason="already called"),
            ]
        )
    _assert_refused(session_factory, _event(seed, server_seq=None))


def test_usernames_are_unique_per_tenant_ignoring_case(
    session_factory: sessionmaker[Session],
) -> None:
    seed, other = _seed(session_factory), _seed(session_factory, "other")
    with session_scope(session_factory) as session:
        ann = User(tenant_id=seed.tenant_id, username="Ann", password_hash="x")
        session.add_all([ann, User(tenant_id=other.tenant_id, username="ann", password_hash="x")])
    assert ann.username_normalized == "ann"
    _assert_refused(
        session_factory, User(tenant_id=seed.tenant_id, username=" ANN", password_hash="x")
    )


def test_a_role_is_granted_tenant_wide_only_once(session_factory: sessionmaker[Session]) -> None:
    seed = _seed(session_factory)
    with session_scope(session_factory) as session:
        session.add(Permission(code="queue.view", description="See the queue"))
        role = Role(tenant_id=seed.tenant_id, name="staff")
        user = User(tenant_id=seed.tenant_id, username="ann", password_hash="x")
        session.add_all([role, user])
        session.flush()
        role.permissions.append(session.get_one(Permission, "queue.view"))
        grants = [
            UserRole(tenant_id=seed.tenant_id, user_id=user.id, role_id=role.id),
            UserRole(
                tenant_id=seed.tenant_id, user_id=user.id, role_id=role.id, branch_id=seed.branch_id
            ),
        ]
        session.add_all(grants)
    with session_scope(session_factory) as session:
        loaded = session.get_one(User, user.id)
        grants = sorted(loaded.role_assignments, key=lambda g: g.branch_id is not None)
        assert [(g.role.name, g.branch_id) for g in grants] == [
            ("staff", None),
            ("staff", seed.branch_id),
        ]
        assert [p.code for p in grants[0].role.permissions] == ["queue.view"]
    _assert_refused(
        session_factory, UserRole(tenant_id=seed.tenant_id, user_id=user.id, role_id=role.id)
    )


# --- tenancy -------------------------------------------------------------------


def test_rows_cannot_point_at_a_branch_of_another_tenant(
    session_factory: sessionmaker[Session],
) -> None:
    seed, other = _seed(session_factory), _seed(session_factory, "other")
    _assert_refused(
        session_factory,
        Service(tenant_id=other.tenant_id, branch_id=seed.branch_id, code="B", name="Other"),
    )


def test_foreign_keys_are_enforced(session_factory: sessionmaker[Session]) -> None:
    _assert_refused(
        session_factory, Branch(tenant_id=uuid7(), name="Nowhere", code="X", time_zone="UTC")
    )
