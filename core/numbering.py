"""Ticket numbers from leased blocks, per branch, service prefix and business day.

Numbers restart every business day (see :class:`core.values.BusinessDay`). The
central service hands each device a block of numbers (a *lease*) per prefix and
day; a device issues only from blocks it holds, so two devices, even offline,
never hand out the same number. The service itself issues from blocks leased to
no device. :func:`next_block` is the allocation rule the service applies inside
its own transaction; :class:`NumberPool` is what a device keeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from core.errors import DomainError, InvalidValue
from core.values import MAX_TICKET_NUMBER, ServiceCode, TicketNumber

DEFAULT_BLOCK_SIZE = 50

FALLBACK_FLOOR = 5000
"""Leases hand out numbers below this; ``FALLBACK_FLOOR..MAX`` is the fallback zone.

Half the number space: 4,999 leased numbers per prefix and day is far more than
a branch issues, and each of the 50 device slots gets 100 fallback numbers a
day, on top of the leased numbers a device keeps in hand (the sync engine tops
them up to at least 50 while online). So a console can issue 150 tickets of a
service in one day offline before its numbers could clash with another's; past
that it still issues (never blocking the counter) and warns staff.
"""
LEASE_CEILING = FALLBACK_FLOOR - 1
MAX_DEVICE_SLOTS = 50
"""Devices per branch with a fallback slot (``slot`` in ``0..MAX_DEVICE_SLOTS-1``)."""


def fallback_numbers(slot: int) -> range:
    """The fallback numbers of the device in ``slot``, ascending, for any one day.

    A device that has used up its leased numbers while offline issues these:
    no lease reaches the zone, and the stride by ``slot`` keeps two devices of a
    branch apart, so even offline no number is issued twice.
    """
    if not 0 <= slot < MAX_DEVICE_SLOTS:
        raise InvalidValue("slot", f"{slot} is outside 0..{MAX_DEVICE_SLOTS - 1}")
    return range(FALLBACK_FLOOR + slot, MAX_TICKET_NUMBER + 1, MAX_DEVICE_SLOTS)


@dataclass(frozen=True, slots=True)
class NumberBlock:
    """Numbers ``first..last`` (inclusive) of ``prefix`` on ``business_day``."""

    prefix: str
    business_day: date
    first: int
    last: int

    def __post_init__(self) -> None:
        ServiceCode(self.prefix)
        if not 1 <= self.first <= self.last <= MAX_TICKET_NUMBER:
            raise InvalidValue(
                "block", f"{self.first}..{self.last} is not a range within 1..{MAX_TICKET_NUMBER}"
            )

    def __len__(self) -> int:
        return self.last - self.first + 1


def next_block(
    existing: Iterable[NumberBlock], prefix: str, business_day: date, size: int = DEFAULT_BLOCK_SIZE
) -> NumberBlock:
    """The block to lease after ``existing`` blocks of the same prefix and day.

    Blocks are handed out in ascending order and never reused. When fewer than
    ``size`` numbers are left the block is shortened; when none are left the
    day is exhausted for that prefix (numbers from
    :data:`FALLBACK_FLOOR` up are kept for offline devices) and :class:`DomainError` says so.
    """
    if size < 1:
        raise InvalidValue("size", "a lease needs at least one number")
    highest = max(
        (b.last for b in existing if b.prefix == prefix and b.business_day == business_day),
        default=0,
    )
    if highest >= LEASE_CEILING:
        raise DomainError(
            f"All {LEASE_CEILING} numbers of prefix {prefix} on "
            f"{business_day.isoformat()} have been handed out"
        )
    return NumberBlock(prefix, business_day, highest + 1, min(highest + size, LEASE_CEILING))


@dataclass(slots=True)
class _Cursor:
    block: NumberBlock
    next: int


@dataclass(slots=True)
class NumberPool:
    """The leased blocks a device holds, and how far it has issued from each.

    ``take`` never returns a number twice. The pool is plain data: persist
    ``snapshot()`` alongside the outbox (in the same transaction as the issue)
    and rebuild it with :meth:`restore`.
    """

    cursors: list[_Cursor] = field(default_factory=list)

    def add(self, block: NumberBlock, next_number: int | None = None) -> None:
        start = block.first if next_number is None else next_number
        if not block.first <= start <= block.last + 1:
            raise InvalidValue("next_number", f"{start} is outside {block.first}..{block.last}")
        if any(c.block == block for c in self.cursors):
            return  # the same lease delivered twice (a retried request): keep our progress
        self.cursors.append(_Cursor(block, start))
        self.cursors.sort(key=lambda c: (c.block.business_day, c.block.prefix, c.block.first))

    def remaining(self, prefix: str, business_day: date) -> int:
        return sum(
            c.block.last - c.next + 1
            for c in self.cursors
            if c.block.prefix == prefix and c.block.business_day == business_day
        )

    def take(self, prefix: str, business_day: date) -> TicketNumber | None:
        """The next unused number of ``prefix`` on ``business_day``, or None if none is leased."""
        for cursor in self.cursors:
            block = cursor.block
            same = block.prefix == prefix and block.business_day == business_day
            if same and cursor.next <= block.last:
                number = cursor.next
                cursor.next += 1
                return TicketNumber(prefix, number)
        return None

    def drop_before(self, business_day: date) -> None:
        """Forget blocks of past days: their numbers can no longer be issued."""
        self.cursors = [c for c in self.cursors if c.block.business_day >= business_day]

    def snapshot(self) -> list[tuple[NumberBlock, int]]:
        return [(c.block, c.next) for c in self.cursors]

    @classmethod
    def restore(cls, rows: Iterable[tuple[NumberBlock, int]]) -> NumberPool:
        pool = cls()
        for block, next_number in rows:
            pool.add(block, next_number)
        return pool
