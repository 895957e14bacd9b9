"""KPI facts: one row per queue segment, completion or counted tally of a ticket.

Derived from the accepted events (:func:`core.kpi_rows.fact_rows`) and rewritten per
touched ticket; reports aggregate them (:mod:`server.services.reports`). Days and
hours are branch-local, bucketed when the row is written. Ids are the event strings
as they are, with no foreign keys: the table is a rebuildable index of the log, not
a record of its own. It is brought up to date after the log, not with it
(:mod:`server.services.kpi_facts`); ``kpi_fact_marks`` says how far, per branch.
"""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import BigInteger, Date, Double, ForeignKey, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base


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
