"""KPI summaries per branch, day and service, and the counters' pauses.

Both are filled by catching the facts up: every mark goes back to the start, so the
service counts each branch's log again (in the background, and for any branch a
report reads first), and the summaries and pauses come with it. The facts already
there stay until their tickets are rewritten.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = ("issued", "called", "served", "no_show", "cancelled", "abandoned", "transfers", "recalls")


def upgrade() -> None:
    op.create_table(
        "kpi_summaries",
        sa.Column("branch_id", sa.Uuid(), nullable=False),
        sa.Column("local_day", sa.Date(), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _COUNTS),
        sa.Column("waits", sa.LargeBinary(), nullable=False),
        sa.Column("service_times", sa.LargeBinary(), nullable=False),
        sa.Column("served_hours", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(
            "branch_id", "local_day", "service_id", name=op.f("pk_kpi_summaries")
        ),
    )
    op.create_table(
        "kpi_pauses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("branch_id", sa.Uuid(), nullable=False),
        sa.Column("counter_id", sa.String(length=64), nullable=False),
        sa.Column("staff_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column("local_day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kpi_pauses")),
    )
    op.create_index(
        "ix_kpi_pauses_branch_id_local_day", "kpi_pauses", ["branch_id", "local_day"]
    )
    op.execute(sa.text("UPDATE kpi_fact_marks SET through_seq = 0"))


def downgrade() -> None:
    op.drop_index("ix_kpi_pauses_branch_id_local_day", table_name="kpi_pauses")
    op.drop_table("kpi_pauses")
    op.drop_table("kpi_summaries")
