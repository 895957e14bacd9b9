"""Ticket numbers the service issues itself, from blocks leased to no device.

The service's next number is the first number of its own blocks that day (in
ascending order) not yet on a ticket of the branch state, looked up in the
state's number index from a per-(prefix, day) hint kept with the cached state,
so issuing costs a dictionary lookup, not a scan of the day's tickets. When its
blocks are used up it leases the next block with :func:`core.numbering.next_block`
over every lease of the prefix and day. Callers hold the branch lock, so two
issuers never take the same number.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core.numbering import NumberBlock, next_block
from core.values import TicketNumber
from server.models import NumberLease
from server.services.queue_state import BranchLease

_NUMBER_LEASES = NumberLease.__table__.c
_LEASES = select(_NUMBER_LEASES.first, _NUMBER_LEASES.last, _NUMBER_LEASES.device_id).where(
    _NUMBER_LEASES.branch_id == bindparam("branch_id"),
    _NUMBER_LEASES.prefix == bindparam("prefix"),
    _NUMBER_LEASES.business_day == bindparam("day"),
)


def next_server_number(
    session: Session, lease: BranchLease, prefix: str, day: date
) -> tuple[TicketNumber, NumberBlock | None]:
    """The service's next number, and the block to lease first if its blocks are used up.

    Record the number with :func:`number_taken` once it is issued.
    """
    params = {"branch_id": lease.branch.id, "prefix": prefix, "day": day}
    leases = session.connection().execute(_LEASES, params).all()
    blocks = [NumberBlock(prefix, day, first, last) for first, last, _ in leases]
    own = sorted(
        (NumberBlock(prefix, day, first, last) for first, last, device in leases if device is None),
        key=lambda b: b.first,
    )
    issued = lease.state.numbers
    start = lease.hints.get((prefix, day), 1)
    for block in own:
        for candidate in range(max(block.first, start), block.last + 1):
            if (day, str(TicketNumber(prefix, candidate))) not in issued:
                lease.hints[(prefix, day)] = candidate
                return TicketNumber(prefix, candidate), None
    block = next_block(blocks, prefix, day)
    lease.hints[(prefix, day)] = block.first
    return TicketNumber(prefix, block.first), block
