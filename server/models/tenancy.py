"""Tenants and their branches, services, counters and pause reasons.

Rows that belong to a branch reference it together with their tenant
(``(tenant_id, branch_id)`` -> ``branches(tenant_id, id)``), so the database
itself refuses a service, ticket or event whose branch belongs to another tenant.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKeyConstraint,
    Integer,
    String,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, JSONType, created_at, tenant_fk, uuid_pk


def branch_fk(ondelete: str | None = None) -> ForeignKeyConstraint:
    """The tenant-consistent reference of a branch-owned row to its branch."""
    return ForeignKeyConstraint(
        ["tenant_id", "branch_id"], ["branches.tenant_id", "branches.id"], ondelete=ondelete
    )


class Tenant(Base):
    """An organisation using QueueDesk; everything else hangs off one."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = uuid_pk()
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_at()
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Branch(Base):
    """A place with queues; its IANA zone and day start define the business day."""

    __tablename__ = "branches"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),  # target of the branch_fk() references
        UniqueConstraint("tenant_id", "code"),
        CheckConstraint("day_starts_at >= 0 AND day_starts_at < 1440", name="day_starts_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    name: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(32))
    time_zone: Mapped[str] = mapped_column(String(64))
    # Minutes after local midnight at which the business day starts.
    day_starts_at: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = created_at()


class Service(Base):
    """A queue at a branch; its code prefixes ticket numbers ("A" -> "A042")."""

    __tablename__ = "services"
    __table_args__ = (
        branch_fk(),
        UniqueConstraint("branch_id", "code"),
        CheckConstraint("target_wait_s IS NULL OR target_wait_s > 0", name="target_wait_s"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    branch_id: Mapped[uuid.UUID]
    code: Mapped[str] = mapped_column(String(3))
    name: Mapped[str] = mapped_column(String(200))
    target_wait_s: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = created_at()


class Counter(Base):
    """A desk or window; its work profile lists the service ids it calls from, in order."""

    __tablename__ = "counters"
    __table_args__ = (
        branch_fk(),
        UniqueConstraint("branch_id", "number"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    branch_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(100))
    number: Mapped[int] = mapped_column(Integer)
    work_profile: Mapped[list[str]] = mapped_column(JSONType, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = created_at()


class PauseReason(Base):
    """A reason staff pick when pausing a counter ("Break", "Paperwork")."""

    __tablename__ = "pause_reasons"
    __table_args__ = (UniqueConstraint("tenant_id", "label"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    label: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
