"""Helpers for the sync endpoint tests: a console's outbox in miniature.

:class:`Console` stamps events with its device id and a contiguous
``device_seq`` the way a real console's outbox does, and builds the wire JSON
of the events a test pushes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.events import (
    CounterOpened,
    EventBase,
    TicketCalled,
    TicketIssued,
    event_to_dict,
)
from core.ids import uuid7
from core.values import BusinessDay, TimeZoneName

ZONE = "Europe/Paris"  # the seeded branches' zone (tests.server.api_support.seed)


def today() -> Any:
    return BusinessDay.of(datetime.now(UTC), TimeZoneName(ZONE)).day


@dataclass
class Console:
    """One device of a branch with its next ``device_seq``."""

    branch_id: uuid.UUID
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    seq: int = 0

    def stamp(self, event: EventBase) -> dict[str, Any]:
        """``event`` as this console's next outbox row, in wire form."""
        self.seq += 1
        stamped = event.model_copy(update={"device_id": str(self.id), "device_seq": self.seq})
        return event_to_dict(stamped)

    def base(self) -> dict[str, Any]:
        return {"id": uuid7(), "branch_id": str(self.branch_id), "occurred_at": datetime.now(UTC)}

    def open(self, counter_id: uuid.UUID) -> dict[str, Any]:
        return self.stamp(CounterOpened(**self.base(), counter_id=str(counter_id)))

    def issue(self, service_id: uuid.UUID, number: str) -> dict[str, Any]:
        event = TicketIssued(
            **self.base(),
            ticket_id=str(uuid7()),
            service_id=str(service_id),
            number=number,
            business_day=today(),
        )
        return self.stamp(event)

    def call(self, ticket_id: str, counter_id: uuid.UUID) -> dict[str, Any]:
        event = TicketCalled(**self.base(), ticket_id=ticket_id, counter_id=str(counter_id))
        return self.stamp(event)

    def body(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """A push request of ``events``."""
        return {"branch_id": str(self.branch_id), "device_id": str(self.id), "events": events}
