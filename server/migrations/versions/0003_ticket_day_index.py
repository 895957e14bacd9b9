"""Tickets by branch, service and business day.

Where-is-my-ticket answers estimate the wait from the median of the service's
latest completions that day; without this index that query read every finished
ticket of the service since the branch opened. Day-range reports use it too.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_tickets_branch_id_service_id_business_day",
        "tickets",
        ["branch_id", "service_id", "business_day", "finished_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_tickets_branch_id_service_id_business_day", table_name="tickets")
