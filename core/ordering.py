"""Call-next ordering without scanning the queue.

DESIGN: among the waiting tickets of a counter's services, the highest priority
class goes first, then due appointments, then the earliest join time. Each
service keeps two sorted lists, so choosing the next ticket costs
O(services × log n) whatever the queue length:

- ``general``: every waiting ticket, by (-priority, band, ordinal);
- ``appointments``: waiting appointment tickets, by (-priority, appointment time).

``band`` 0 is the front (transfers to the front, returns from park; the latest
first), band 1 everyone else. ``ordinal`` comes from the branch's own event
order, never from a device clock, so every replica orders the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sortedcontainers import SortedList

FRONT = 0
NORMAL = 1

QueueKey = tuple[int, int, int, str]  # (-priority, band, ordinal, ticket_id)
AppointmentKey = tuple[int, float, int, str]  # (-priority, due timestamp, ordinal, ticket_id)


@dataclass(slots=True)
class ServiceQueue:
    general: SortedList = field(default_factory=SortedList)
    appointments: SortedList = field(default_factory=SortedList)


@dataclass(slots=True)
class WaitingIndex:
    """The waiting tickets of a branch, per service, in call order."""

    queues: dict[str, ServiceQueue] = field(default_factory=dict)

    def add(self, service_id: str, key: QueueKey, appointment: AppointmentKey | None) -> None:
        queue = self.queues.get(service_id)
        if queue is None:
            queue = self.queues[service_id] = ServiceQueue()
        queue.general.add(key)
        if appointment is not None:
            queue.appointments.add(appointment)

    def remove(self, service_id: str, key: QueueKey, appointment: AppointmentKey | None) -> None:
        queue = self.queues[service_id]
        queue.general.remove(key)
        if appointment is not None:
            queue.appointments.remove(appointment)

    def count(self, service_id: str) -> int:
        queue = self.queues.get(service_id)
        return len(queue.general) if queue else 0

    def position(self, service_id: str, key: QueueKey) -> int:
        """1-based place of ``key`` in its service's queue (1 = called next)."""
        return int(self.queues[service_id].general.bisect_left(key)) + 1

    def in_order(self, service_id: str) -> list[QueueKey]:
        queue = self.queues.get(service_id)
        return list(queue.general) if queue else []

    def next_ticket(self, service_ids: tuple[str, ...], now: datetime) -> str | None:
        """The id of the ticket a counter serving ``service_ids`` calls next, or None."""
        queues = [q for s in service_ids if (q := self.queues.get(s)) is not None and q.general]
        if not queues:
            return None
        top = min(q.general[0][0] for q in queues)  # -priority of the best class present
        now_ts = now.timestamp()
        best_appointment: AppointmentKey | None = None
        for queue in queues:
            appts = queue.appointments
            if not appts:
                continue
            i = appts.bisect_left((top, float("-inf"), -1, ""))
            if i < len(appts):
                candidate = appts[i]
                if (
                    candidate[0] == top
                    and candidate[1] <= now_ts
                    and (best_appointment is None or candidate[1:] < best_appointment[1:])
                ):
                    best_appointment = candidate
        if best_appointment is not None:
            return str(best_appointment[3])
        heads = [q.general[0] for q in queues if q.general[0][0] == top]
        return str(min(heads)[3])
