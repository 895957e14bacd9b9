"""Registered devices: staff consoles, ticket kiosks and waiting-room displays.

A device pushes events with a contiguous ``device_seq``; ``last_device_seq`` is
the last one the service accepted, so a gap or a replay is recognised at once.
``slot`` (unique per branch, ``0..MAX_DEVICE_SLOTS-1``) picks the device's
fallback ticket numbers (:func:`core.numbering.fallback_numbers`); a device
registered when every slot is taken has none.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.numbering import MAX_DEVICE_SLOTS
from server.models.base import Base, UTCDateTime, created_at, one_of, tenant_fk, uuid_pk
from server.models.tenancy import branch_fk

DEVICE_KINDS = ("console", "kiosk", "display")


class Device(Base):
    """One installation that talks to the service; revoked devices are refused."""

    __tablename__ = "devices"
    __table_args__ = (
        branch_fk(),
        CheckConstraint(one_of("kind", DEVICE_KINDS), name="kind"),
        CheckConstraint("last_device_seq >= 0", name="last_device_seq"),
        CheckConstraint(f"slot >= 0 AND slot < {MAX_DEVICE_SLOTS}", name="slot"),
        UniqueConstraint("branch_id", "slot"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    branch_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="console")
    created_at: Mapped[datetime] = created_at()
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_device_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    slot: Mapped[int | None] = mapped_column(SmallInteger)
