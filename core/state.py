"""The state of one branch: its services, counters and tickets.

Built by folding events with :func:`core.machine.apply`. Configuration
(services, counters) is reference data handed in at creation; everything else
comes from events. The state is mutable for speed (a million-event replay must
not copy dicts), so treat a state you passed to ``apply`` as consumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from core.errors import UnknownCounter, UnknownService, UnknownTicket
from core.events import Customer
from core.ordering import AppointmentKey, QueueKey, WaitingIndex
from core.values import Channel, PriorityClass, TimeZoneName


class TicketStatus(StrEnum):
    WAITING = "waiting"
    CALLED = "called"
    SERVING = "serving"
    PARKED = "parked"
    DONE = "done"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({TicketStatus.DONE, TicketStatus.NO_SHOW, TicketStatus.CANCELLED})


class CounterStatus(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    id: str
    code: str  # ticket number prefix
    name: str
    target_wait_s: int | None = None  # SLA: called within this many seconds


@dataclass(frozen=True, slots=True)
class CounterConfig:
    id: str
    name: str  # how staff and customers refer to it: "Counter 3"
    work_profile: tuple[str, ...] = ()  # the service ids it calls from, in order


@dataclass(slots=True)
class Ticket:
    id: str
    number: str
    service_id: str
    business_day: date
    channel: Channel
    priority: PriorityClass
    issued_at: datetime
    appointment_at: datetime | None = None
    customer: Customer | None = None
    status: TicketStatus = TicketStatus.WAITING
    counter_id: str | None = None
    segment_started_at: datetime | None = None  # when it joined its current queue
    called_at: datetime | None = None
    service_started_at: datetime | None = None
    finished_at: datetime | None = None
    recalls: int = 0
    transfers: int = 0
    join_ordinal: int = 0  # original join order, for transfers "by original join time"
    queue_key: QueueKey | None = None
    appointment_key: AppointmentKey | None = None
    parked_by: str | None = None  # the counter that parked it, while it is parked


@dataclass(slots=True)
class Counter:
    id: str
    name: str
    work_profile: tuple[str, ...]
    status: CounterStatus = CounterStatus.CLOSED
    pause_reason: str | None = None
    current_ticket_id: str | None = None
    staff_id: str | None = None


@dataclass(slots=True)
class BranchState:
    branch_id: str
    time_zone: TimeZoneName
    day_starts_at_min: int = 0
    services: dict[str, ServiceConfig] = field(default_factory=dict)
    counters: dict[str, Counter] = field(default_factory=dict)
    tickets: dict[str, Ticket] = field(default_factory=dict)
    numbers: dict[tuple[date, str], str] = field(default_factory=dict)  # -> ticket id
    waiting: WaitingIndex = field(default_factory=WaitingIndex)
    applied: int = 0  # events folded so far: the branch's own order

    @classmethod
    def new(
        cls,
        branch_id: str,
        time_zone: str | TimeZoneName,
        services: list[ServiceConfig] | tuple[ServiceConfig, ...] = (),
        counters: list[CounterConfig] | tuple[CounterConfig, ...] = (),
        day_starts_at_min: int = 0,
    ) -> BranchState:
        zone = time_zone if isinstance(time_zone, TimeZoneName) else TimeZoneName(time_zone)
        state = cls(branch_id=branch_id, time_zone=zone, day_starts_at_min=day_starts_at_min)
        for service in services:
            state.services[service.id] = service
        for config in counters:
            state.counters[config.id] = Counter(config.id, config.name, config.work_profile)
        return state

    # -- lookups with the errors a member of staff can act on ----------------------

    def ticket(self, ticket_id: str) -> Ticket:
        try:
            return self.tickets[ticket_id]
        except KeyError:
            raise UnknownTicket(f"There is no ticket {ticket_id} in this branch") from None

    def counter(self, counter_id: str) -> Counter:
        try:
            return self.counters[counter_id]
        except KeyError:
            raise UnknownCounter(f"There is no counter {counter_id} in this branch") from None

    def service(self, service_id: str) -> ServiceConfig:
        try:
            return self.services[service_id]
        except KeyError:
            raise UnknownService(f"There is no service {service_id} in this branch") from None

    def ticket_by_number(self, day: date, number: str) -> Ticket:
        try:
            return self.tickets[self.numbers[(day, number)]]
        except KeyError:
            raise UnknownTicket(f"There is no ticket {number} on {day.isoformat()}") from None

    def waiting_in(self, service_id: str) -> list[Ticket]:
        """Waiting tickets of one service in the order they will be called."""
        return [self.tickets[key[3]] for key in self.waiting.in_order(service_id)]

    def position(self, ticket: Ticket) -> int | None:
        """1-based place in its queue while waiting, else None."""
        if ticket.queue_key is None:
            return None
        return self.waiting.position(ticket.service_id, ticket.queue_key)
