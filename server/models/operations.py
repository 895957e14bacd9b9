"""Operations: alerts raised for people to act on, and the catalogue of backups."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import (
    Base,
    JSONType,
    UTCDateTime,
    created_at,
    one_of,
    tenant_fk,
    uuid_pk,
)

SEVERITIES = ("info", "warning", "critical")
BACKUP_STATUSES = ("running", "completed", "failed")


class Alert(Base):
    """Something a manager should see: an SLA breach, a device offline, a failing webhook."""

    __tablename__ = "alerts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "branch_id"],
            ["branches.tenant_id", "branches.id"],
            ondelete="CASCADE",
        ),
        CheckConstraint(one_of("severity", SEVERITIES), name="severity"),
        Index("ix_alerts_tenant_id_created_at", "tenant_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    branch_id: Mapped[uuid.UUID | None] = mapped_column(index=True)  # NULL: tenant-wide
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = created_at()
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class Backup(Base):
    """One backup file: of one tenant, or of the whole service when ``tenant_id`` is NULL."""

    __tablename__ = "backups"
    __table_args__ = (CheckConstraint(one_of("status", BACKUP_STATUSES), name="status"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    # Where the file is, relative to the service's backup directory or a URL.
    location: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at()
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
