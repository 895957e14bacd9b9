"""KPI facts: one row per queue segment, completion or counted tally of a ticket.

Derived from the accepted events (:func:`core.kpi_rows.fact_rows`) and rewritten per
touched ticket; reports aggregate them (:mod:`server.services.reports`). Days and
hours are branch-local, bucketed when the row is written. Ids are the event strings
as they are, with no foreign keys: the table is a rebuildable index of the log, not
a record of its own. It is brought up to date after the log, not with it
(:mod:`server.services.kpi_facts`); ``kpi_fact_marks`` says how far, per branch.

``kpi_summaries`` keeps, per branch, local day and service, the counts of those
facts and their waits and service times as sorted arrays, so a tenant's report by
branch reads thousands of rows instead of millions. ``kpi_pauses`` holds the
counters' pauses folded from the counter events, the open ones included.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, UTCDateTime


class KpiFact(Base):
    __tablename__ = "kpi_facts"
    __table_args__ = (
        Index("ix_kpi_facts_tenant_id_branch_id_local_day", "tenant_id", "branch_id", "local_day"),
    )

    ticket_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    ord: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[uuid.UUID]
    branch_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(16))
    service_id: Mapped[str | None] = mapped_column(String(64))
    counter_id: Mapped[str | None] = mapped_column(String(64))
    staff_id: Mapped[str | None] = mapped_column(String(64))
    local_day: Mapped[date] = mapped_column(Date)
    hour_start: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Double)
    no_show: Mapped[int] = mapped_column(SmallInteger)


class KpiFactMark(Base):
    """How far a branch's facts are: every event up to ``through_seq`` is in them.

    ``time_zone`` is the zone their days and hours were bucketed in; when the
    branch's zone changes the facts are counted again from the start.
    """

    __tablename__ = "kpi_fact_marks"

    branch_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("branches.id", ondelete="CASCADE"), primary_key=True
    )
    through_seq: Mapped[int] = mapped_column(BigInteger)
    time_zone: Mapped[str] = mapped_column(String(64))


class KpiSummary(Base):
    """The facts of one branch, local day and service (``""`` for none), summed up.

    ``waits`` and ``service_times`` are the values of the called segments and the
    timed completions, sorted, as little-endian float64; ``served_hours`` the
    completions per stored ``hour_start``, as little-endian int64 pairs. SLA counts
    are not kept: they depend on the services' current targets, and a sorted array
    answers them at once.
    """

    __tablename__ = "kpi_summaries"

    branch_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    local_day: Mapped[date] = mapped_column(Date, primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[uuid.UUID]
    issued: Mapped[int] = mapped_column(Integer)
    called: Mapped[int] = mapped_column(Integer)
    served: Mapped[int] = mapped_column(Integer)
    no_show: Mapped[int] = mapped_column(Integer)
    cancelled: Mapped[int] = mapped_column(Integer)
    abandoned: Mapped[int] = mapped_column(Integer)
    transfers: Mapped[int] = mapped_column(Integer)
    recalls: Mapped[int] = mapped_column(Integer)
    waits: Mapped[bytes] = mapped_column(LargeBinary)
    service_times: Mapped[bytes] = mapped_column(LargeBinary)
    served_hours: Mapped[bytes] = mapped_column(LargeBinary)


class KpiPause(Base):
    """One pause of a counter, from its ``counter.paused`` to the next resume or close.

    ``ended_at`` is None while the pause is still open at the branch's mark; the
    next catch-up carries it on. ``local_day`` is the start's, in the branch's zone.
    """

    __tablename__ = "kpi_pauses"
    __table_args__ = (Index("ix_kpi_pauses_branch_id_local_day", "branch_id", "local_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID]
    branch_id: Mapped[uuid.UUID]
    counter_id: Mapped[str] = mapped_column(String(64))
    staff_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    seconds: Mapped[float | None] = mapped_column(Double)  # never below 0; None while open
    local_day: Mapped[date] = mapped_column(Date)
