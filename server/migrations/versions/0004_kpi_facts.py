"""KPI facts: per-segment, per-completion and tally rows that reports aggregate.

Created empty, with no marks: the service fills them from the existing log after
the upgrade (in the background, and for any branch a report reads first), so an
upgrade does not wait for the whole history to be counted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kpi_facts",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("ord", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("branch_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=True),
        sa.Column("counter_id", sa.String(length=64), nullable=True),
        sa.Column("staff_id", sa.String(length=64), nullable=True),
        sa.Column("local_day", sa.Date(), nullable=False),
        sa.Column("hour_start", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("no_show", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", "ord", name=op.f("pk_kpi_facts")),
    )
    op.create_index(
        "ix_kpi_facts_tenant_id_branch_id_local_day",
        "kpi_facts",
        ["tenant_id", "branch_id", "local_day"],
    )
    op.create_table(
        "kpi_fact_marks",
        sa.Column("branch_id", sa.Uuid(), nullable=False),
        sa.Column("through_seq", sa.BigInteger(), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["branch_id"],
            ["branches.id"],
            name=op.f("fk_kpi_fact_marks_branch_id_branches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("branch_id", name=op.f("pk_kpi_fact_marks")),
    )


def downgrade() -> None:
    op.drop_table("kpi_fact_marks")
    op.drop_index("ix_kpi_facts_tenant_id_branch_id_local_day", table_name="kpi_facts")
    op.drop_table("kpi_facts")
