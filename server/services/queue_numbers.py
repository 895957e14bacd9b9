"""Ticket numbers the service issues itself, from blocks leased to no device.

The service's next number is one past the highest number already on a ticket
from its own blocks that day (read from the ``tickets`` projection), so issuing
needs no state of its own; when its blocks are used up it leases the next block
with :func:`core.numbering.next_block` over every lease of the prefix and day.
Callers hold the branch lock, so two issuers never read the same "highest".
"""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import Integer, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session

from core.numbering import NumberBlock, next_block
from core.values import TicketNumber
from server.models import Branch, NumberLease
from server.models import Ticket as TicketRow


def next_server_number(
    session: Session, branch: Branch, prefix: str, day: date
) -> tuple[TicketNumber, NumberBlock | None]:
    """The service's next number, and the block to lease first if its blocks are used up."""
    leases = session.execute(
        select(NumberLease.first, NumberLease.last, NumberLease.device_id).where(
            NumberLease.branch_id == branch.id,
            NumberLease.prefix == prefix,
            NumberLease.business_day == day,
        )
    ).all()
    blocks = [NumberBlock(prefix, day, first, last) for first, last, _ in leases]
    own = sorted(
        (NumberBlock(prefix, day, first, last) for first, last, device in leases if device is None),
        key=lambda b: b.first,
    )
    highest = highest_issued(session, branch.id, prefix, day, own)
    for block in own:
        if highest is None or highest < block.last:
            start = block.first if highest is None else max(block.first, highest + 1)
            return TicketNumber(prefix, start), None
    block = next_block(blocks, prefix, day)
    return TicketNumber(prefix, block.first), block


def highest_issued(
    session: Session, branch_id: uuid.UUID, prefix: str, day: date, blocks: list[NumberBlock]
) -> int | None:
    """The highest number of ``blocks`` already on a ticket that day (projection query)."""
    if not blocks:
        return None
    digits_at = len(prefix) + 1
    is_prefix = and_(
        func.substr(TicketRow.number, 1, len(prefix)) == prefix,
        func.substr(TicketRow.number, digits_at, 1).between("0", "9"),
    )
    # CASE first, so PostgreSQL never casts another prefix's number ("AB001") to int.
    value = case((is_prefix, cast(func.substr(TicketRow.number, digits_at), Integer)))
    highest: int | None = session.scalar(
        select(func.max(value)).where(
            TicketRow.branch_id == branch_id,
            TicketRow.business_day == day,
            or_(*(value.between(b.first, b.last) for b in blocks)),
        )
    )
    return highest
