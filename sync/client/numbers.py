"""Where a walk-in ticket's number comes from when the console issues it itself.

Issuing must never wait for the network (DESIGN "Desktop"), yet two consoles of a
branch must not hand out the same number on the same day. In order of preference:

1. **Leased blocks** (:class:`core.numbering.NumberPool`): ranges below
   :data:`~core.numbering.FALLBACK_FLOOR` the service leased to this device while
   online; no other device or the service itself issues them.
2. **The device's fallback numbers** (:func:`core.numbering.fallback_numbers`):
   when the leases of the day are used up, numbers from the fallback zone striding
   by the device's branch-unique ``slot``. No lease reaches the zone and no two
   slots share a number, so this is still collision-free.
3. **Unslotted**: with no slot (never assigned, or its 40 numbers a day used up),
   the console still issues: the highest number of the fallback zone that this
   cache has not seen that day (slotted devices count upwards from the floor, so
   the two meet last) and records a warning so the UI can say the number may
   clash. The service, first commit wins, refuses a clash; the console then shows
   the rejection.

Every number handed out is remembered in the same transaction as the issue (the
block's next number, or a ``fallback_used`` row), so neither a restart nor a
rejected and undone issue ever makes the console repeat a number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from sqlalchemy import Connection, delete, insert, select, update

from core.errors import DomainError
from core.numbering import FALLBACK_FLOOR, NumberBlock, NumberPool, fallback_numbers
from core.values import MAX_TICKET_NUMBER, TicketNumber
from sync.client.store import fallback_used, number_blocks
from sync.protocol import LeaseBlock

Source = Literal["lease", "fallback", "unslotted"]


@dataclass(frozen=True, slots=True)
class Allocation:
    number: TicketNumber
    business_day: date
    source: Source


@dataclass(slots=True)
class NumberSource:
    """The numbers this device may issue offline (see the module docstring)."""

    pool: NumberPool = field(default_factory=NumberPool)
    used: set[tuple[str, date, int]] = field(default_factory=set)  # fallback numbers issued
    slot: int | None = None

    @classmethod
    def load(cls, conn: Connection, slot: int | None) -> NumberSource:
        rows = conn.execute(select(number_blocks)).mappings()
        pool = NumberPool.restore(
            (
                NumberBlock(
                    r["prefix"], date.fromisoformat(r["business_day"]), r["first"], r["last"]
                ),
                r["next"],
            )
            for r in rows
        )
        used = {
            (prefix, date.fromisoformat(day), number)
            for prefix, day, number in conn.execute(select(fallback_used))
        }
        return cls(pool, used, slot)

    def allocate(
        self, conn: Connection, prefix: str, day: date, taken: Callable[[str], bool]
    ) -> Allocation:
        """Take the next number of ``prefix`` on ``day`` and record it through ``conn``.

        ``taken`` says whether a number (``"A042"``) is already in the local state.
        The in-memory pool moves on at once; the caller restores it with
        :meth:`snapshot`/:meth:`restore` if its transaction fails.
        """
        while (leased := self.pool.take(prefix, day)) is not None:
            if not taken(str(leased)):
                self._save_block(conn, prefix, day)
                return Allocation(leased, day, "lease")
        self._save_block(conn, prefix, day)  # numbers skipped above stay skipped
        if self.slot is not None:
            for number in fallback_numbers(self.slot):
                if self._free(prefix, day, number, taken):
                    return self._use(conn, prefix, day, number, "fallback")
        for number in range(MAX_TICKET_NUMBER, FALLBACK_FLOOR - 1, -1):
            if self._free(prefix, day, number, taken):
                return self._use(conn, prefix, day, number, "unslotted")
        raise DomainError(f"No ticket number of {prefix} is left on {day.isoformat()}")

    def _free(self, prefix: str, day: date, number: int, taken: Callable[[str], bool]) -> bool:
        return (prefix, day, number) not in self.used and not taken(
            str(TicketNumber(prefix, number))
        )

    def _use(
        self, conn: Connection, prefix: str, day: date, number: int, source: Source
    ) -> Allocation:
        self.used.add((prefix, day, number))
        conn.execute(
            insert(fallback_used).values(prefix=prefix, business_day=day.isoformat(), number=number)
        )
        return Allocation(TicketNumber(prefix, number), day, source)

    def _save_block(self, conn: Connection, prefix: str, day: date) -> None:
        for block, next_number in self.pool.snapshot():
            if block.prefix == prefix and block.business_day == day:
                conn.execute(
                    update(number_blocks)
                    .where(
                        number_blocks.c.prefix == prefix,
                        number_blocks.c.business_day == day.isoformat(),
                        number_blocks.c.first == block.first,
                    )
                    .values(next=next_number)
                )

    def add(self, conn: Connection, leases: list[LeaseBlock]) -> None:
        """Keep newly leased blocks (a block already held keeps its progress).

        Blocks and fallback numbers of days before the earliest new lease are
        forgotten: the service leases for the branch's current day, so those days
        are over (and the device clock is never asked).
        """
        for lease in leases:
            block = NumberBlock(lease.prefix, lease.business_day, lease.first, lease.last)
            self.pool.add(block)
            conn.execute(
                insert(number_blocks)
                .prefix_with("OR IGNORE")
                .values(
                    prefix=block.prefix,
                    business_day=block.business_day.isoformat(),
                    first=block.first,
                    last=block.last,
                    next=block.first,
                    service_id=lease.service_id,
                )
            )
        if leases:
            self.forget_before(conn, min(lease.business_day for lease in leases))

    def forget_before(self, conn: Connection, today: date) -> None:
        """Past days' numbers can no longer be issued; keep the tables small."""
        self.pool.drop_before(today)
        self.used = {u for u in self.used if u[1] >= today}
        conn.execute(delete(number_blocks).where(number_blocks.c.business_day < today.isoformat()))
        conn.execute(delete(fallback_used).where(fallback_used.c.business_day < today.isoformat()))

    def snapshot(self) -> tuple[list[tuple[NumberBlock, int]], set[tuple[str, date, int]]]:
        return self.pool.snapshot(), set(self.used)

    def restore(
        self, saved: tuple[list[tuple[NumberBlock, int]], set[tuple[str, date, int]]]
    ) -> None:
        self.pool = NumberPool.restore(saved[0])
        self.used = set(saved[1])
