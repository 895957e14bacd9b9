"""The queue: the event log, the ticket projection, sequences and number leases.

``queue_events`` is the record of what happened; ``tickets`` is a projection of
it kept in the same transaction for queries. Accepted events get a branch-wide
``server_seq`` from :func:`allocate_server_seqs`; rejected events are kept,
marked, without one.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.state import TicketStatus
from core.values import Channel
from server.db import DriverQuery
from server.models.base import (
    Base,
    JSONType,
    UTCDateTime,
    created_at,
    one_of,
    tenant_fk,
    utc_now,
    uuid_pk,
)
from server.models.tenancy import branch_fk

EVENT_STATUSES = ("accepted", "rejected")


class Ticket(Base):
    """The current state of one ticket, as folded from its events."""

    __tablename__ = "tickets"
    __table_args__ = (
        branch_fk(),
        UniqueConstraint("branch_id", "business_day", "number"),
        Index("ix_tickets_branch_id_status_service_id", "branch_id", "status", "service_id"),
        # The day's latest completions of a service (wait estimates), day-range reports.
        Index(
            "ix_tickets_branch_id_service_id_business_day",
            "branch_id",
            "service_id",
            "business_day",
            "finished_at",
        ),
        CheckConstraint(one_of("status", (s.value for s in TicketStatus)), name="status"),
        CheckConstraint(one_of("channel", (c.value for c in Channel)), name="channel"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    branch_id: Mapped[uuid.UUID]
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id"), index=True)
    number: Mapped[str] = mapped_column(String(8))
    business_day: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default=TicketStatus.WAITING.value)
    priority: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    channel: Mapped[str] = mapped_column(String(16), default=Channel.WALK_IN.value)
    counter_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("counters.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    called_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    appointment_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    customer_name: Mapped[str | None] = mapped_column(String(200))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    notes: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)


class QueueEvent(Base):
    """One event as received: its own id, where it came from, and the verdict."""

    __tablename__ = "queue_events"
    __table_args__ = (
        branch_fk(),
        UniqueConstraint("branch_id", "server_seq"),
        UniqueConstraint("device_id", "device_seq"),
        CheckConstraint(one_of("status", EVENT_STATUSES), name="status"),
        CheckConstraint("status <> 'accepted' OR server_seq IS NOT NULL", name="accepted_seq"),
        CheckConstraint(
            "(device_id IS NULL AND device_seq IS NULL)"
            " OR (device_id IS NOT NULL AND device_seq IS NOT NULL)",
            name="device_seq",
        ),
    )

    # The event's own UUID: pushing it again is recognised by the primary key.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    branch_id: Mapped[uuid.UUID]
    server_seq: Mapped[int | None] = mapped_column(BigInteger)
    device_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("devices.id"))
    device_seq: Mapped[int | None] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(64))
    # The ticket the event is about (none for counter events): a ticket's history.
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    reason: Mapped[str | None] = mapped_column(Text)


class BranchSequence(Base):
    """The last ``server_seq`` handed out in a branch (see :func:`allocate_server_seqs`)."""

    __tablename__ = "branch_sequences"

    branch_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("branches.id", ondelete="CASCADE"), primary_key=True
    )
    last_server_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class NumberLease(Base):
    """A block ``first..last`` of ticket numbers of one prefix and day, leased to a device.

    ``device_id`` NULL is a block the service issues from itself. The unique
    ``first`` per prefix and day makes two concurrent leases of the same block
    fail instead of handing out the same numbers twice.
    """

    __tablename__ = "number_leases"
    __table_args__ = (
        branch_fk(),
        UniqueConstraint("branch_id", "prefix", "business_day", "first"),
        CheckConstraint('"first" >= 1 AND "last" >= "first"', name="range"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    branch_id: Mapped[uuid.UUID]
    prefix: Mapped[str] = mapped_column(String(3))
    business_day: Mapped[date] = mapped_column(Date)
    first: Mapped[int] = mapped_column(Integer)
    last: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("devices.id"), index=True)
    created_at: Mapped[datetime] = created_at()


_SEQUENCES = BranchSequence.__table__.c
_BUMP_SEQ = DriverQuery(
    update(BranchSequence.__table__)
    .where(_SEQUENCES.branch_id == bindparam("of_branch"))
    .values(last_server_seq=_SEQUENCES.last_server_seq + bindparam("count"))
    .returning(_SEQUENCES.last_server_seq)
)


def allocate_server_seqs(session: Session, branch_id: uuid.UUID, count: int = 1) -> range:
    """Reserve ``count`` consecutive ``server_seq`` values of a branch, in this transaction.

    One UPDATE ... RETURNING increments the counter, so the row stays locked until
    the transaction ends: concurrent pushes to one branch queue here, and a rolled
    back push gives its numbers back, leaving no gaps. The row is created on first use.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    connection = session.connection()
    params = {"of_branch": branch_id, "count": count}
    bumped = _BUMP_SEQ.first(connection, params)
    if bumped is None:  # the branch's first event: create the row (a concurrent first is fine)
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        session.execute(
            insert(BranchSequence)
            .values(branch_id=branch_id, last_server_seq=0)
            .on_conflict_do_nothing(index_elements=["branch_id"])
        )
        bumped = _BUMP_SEQ.first(connection, params)
        assert bumped is not None
    last = int(bumped[0])
    return range(last - count + 1, last + 1)
