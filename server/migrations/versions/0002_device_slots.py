"""Device slots: each device's branch-unique fallback-number slot.

A device that runs out of leased ticket numbers while offline issues from the
fallback zone, striding by its ``slot`` (``core.numbering.fallback_numbers``).
The slot is unique per branch and NULL for devices registered when all
``MAX_DEVICE_SLOTS`` (50) were taken. Existing devices start without one; the
sync endpoints give one to a device the first time it syncs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("slot", sa.SmallInteger(), nullable=True))
        batch_op.create_unique_constraint(
            op.f("uq_devices_branch_id_slot"), ["branch_id", "slot"]
        )
        batch_op.create_check_constraint(op.f("ck_devices_slot"), "slot >= 0 AND slot < 50")


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_constraint(op.f("ck_devices_slot"), type_="check")
        batch_op.drop_constraint(op.f("uq_devices_branch_id_slot"), type_="unique")
        batch_op.drop_column("slot")
