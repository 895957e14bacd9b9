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
from server.db import DriverQuery
from server.models import NumberLease
from server.services.queue_state import BranchLease

_NUMBER_LEASES = NumberLease.__table__.c
_OF_DAY = (
    _NUMBER_LEASES.branch_id == bindparam("branch_id"),
    _NUMBER_LEASES.prefix == bindparam("prefix"),
    _NUMBER_LEASES.business_day == bindparam("day"),
)
# The service's own blocks that still hold numbers at or after the hint: after a
# busy day the day has dozens of leases, and nearly every issue needs one of them.
_OWN_AHEAD = DriverQuery(
    select(_NUMBER_LEASES.first, _NUMBER_LEASES.last)
    .where(*_OF_DAY, _NUMBER_LEASES.device_id.is_(None), _NUMBER_LEASES.last >= bindparam("start"))
    .order_by(_NUMBER_LEASES.first)
)
_LEASES = select(_NUMBER_LEASES.first, _NUMBER_LEASES.last).where(*_OF_DAY)


def next_server_number(
    session: Session, lease: BranchLease, prefix: str, day: date
) -> tuple[TicketNumber, NumberBlock | None]:
    """The service's next number, and the block to lease first if its blocks are used up."""
    connection = session.connection()
    issued = lease.state.numbers
    start = lease.hints.get((prefix, day), 1)
    params = {"branch_id": lease.branch.id, "prefix": prefix, "day": day, "start": start}
    for first, last in _OWN_AHEAD.rows(connection, params):
        for candidate in range(max(first, start), last + 1):
            if (day, str(TicketNumber(prefix, candidate))) not in issued:
                lease.hints[(prefix, day)] = candidate
                return TicketNumber(prefix, candidate), None
    leases = connection.execute(_LEASES, params).all()
    block = next_block((NumberBlock(prefix, day, f, last) for f, last in leases), prefix, day)
    lease.hints[(prefix, day)] = block.first
    return TicketNumber(prefix, block.first), block
