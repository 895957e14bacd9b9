"""What the local cache hands out: read-only views of its rows, and sync outcomes.

The console and the sync engine receive these plain frozen values, never rows or
SQLAlchemy objects, so nothing they hold can reach back into the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, NamedTuple

from core.events import (
    CounterClosed,
    CounterOpened,
    CounterPaused,
    CounterResumed,
    EventBase,
    ServiceStarted,
    TicketCalled,
    TicketCancelled,
    TicketCompleted,
    TicketIssued,
    TicketNoShow,
    TicketParked,
    TicketRecalled,
    TicketReturned,
    TicketTransferred,
)
from core.state import BranchState

AlertKind = Literal["rejected", "number_warning"]


@dataclass(frozen=True, slots=True)
class TicketView:
    id: str
    number: str
    service_id: str
    business_day: date
    status: str
    priority: int
    channel: str
    counter_id: str | None
    customer_name: str | None
    customer_email: str | None
    customer_phone: str | None
    customer_notes: str | None
    issued_at: datetime
    appointment_at: datetime | None
    segment_started_at: datetime | None
    called_at: datetime | None
    service_started_at: datetime | None
    finished_at: datetime | None
    recalls: int
    transfers: int
    unsynced: bool  # a change to it is still in the outbox
    parked_by: str | None = None  # the counter that parked it, while it is parked
    # Where a waiting ticket stands in its service's call order (lower is sooner,
    # then by id); None when it is not waiting.
    call_order: tuple[int, int, int] | None = None

    @classmethod
    def from_row(cls, row: Any) -> TicketView:
        """From a SQLAlchemy row of the ``tickets`` table."""
        return cls.from_mapping(row._mapping)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> TicketView:
        """From the columns of a ``tickets`` row by name."""

        def when(key: str) -> datetime | None:
            value = m[key]
            return datetime.fromisoformat(value) if value else None

        return cls(
            id=m["id"],
            number=m["number"],
            service_id=m["service_id"],
            business_day=date.fromisoformat(m["business_day"]),
            status=m["status"],
            priority=m["priority"],
            channel=m["channel"],
            counter_id=m["counter_id"],
            customer_name=m["customer_name"],
            customer_email=m["customer_email"],
            customer_phone=m["customer_phone"],
            customer_notes=m["customer_notes"],
            issued_at=datetime.fromisoformat(m["issued_at"]),
            appointment_at=when("appointment_at"),
            segment_started_at=when("segment_started_at"),
            called_at=when("called_at"),
            service_started_at=when("service_started_at"),
            finished_at=when("finished_at"),
            recalls=m["recalls"],
            transfers=m["transfers"],
            unsynced=bool(m["unsynced"]),
            parked_by=m["parked_by"],
            call_order=(
                None
                if m["queue_ordinal"] is None
                else (m["queue_priority"], m["queue_band"], m["queue_ordinal"])
            ),
        )


class QueueRow(NamedTuple):
    """A waiting ticket as a queue table shows it: a small tuple, not a full view.

    A branch may have 100,000 tickets waiting, so a queue keeps only what its table
    shows. Rows compare in call order: the first four fields are the ticket's
    call-order key and its (unique) id, so a sorted list of rows is a queue and
    ``bisect`` finds a row's place.
    """

    queue_priority: int
    queue_band: int
    queue_ordinal: int
    id: str
    number: str
    service_id: str
    waiting_since: float  # POSIX seconds: start of its current queue segment
    priority: int
    channel: str
    unsynced: bool

    @classmethod
    def of(cls, ticket: TicketView) -> QueueRow:
        """The row of a waiting ticket's full view."""
        order = ticket.call_order or (0, 0, 0)
        since = ticket.segment_started_at or ticket.issued_at
        return cls(
            order[0],
            order[1],
            order[2],
            ticket.id,
            ticket.number,
            ticket.service_id,
            since.timestamp(),
            ticket.priority,
            ticket.channel,
            ticket.unsynced,
        )

    @property
    def key(self) -> tuple[int, int, int, str]:
        """Its place in the call order (lower is sooner)."""
        return (self.queue_priority, self.queue_band, self.queue_ordinal, self.id)


@dataclass(frozen=True, slots=True)
class WaitingChanges:
    """What changed in the queues since a reader's last look (see ``waiting_changes``).

    Either ``everything`` (all waiting tickets by service as compact
    :class:`QueueRow` values, in call order: the reader starts over) or
    ``tickets``: the current rows of the tickets written since, whatever their
    status now, and ``gone``: ids whose rows no longer exist. Pass ``change`` next
    time.
    """

    change: int
    everything: dict[str, list[QueueRow]] | None
    tickets: list[TicketView]
    gone: frozenset[str]


@dataclass(frozen=True, slots=True)
class CounterView:
    id: str
    name: str
    status: str  # closed | open | paused
    pause_reason: str | None
    current_ticket_id: str | None
    current_ticket_number: str | None
    staff_id: str | None
    work_profile: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ServiceView:
    id: str
    code: str
    name: str
    target_wait_s: int | None
    active: bool
    waiting: int  # tickets waiting in it now


@dataclass(frozen=True, slots=True)
class Rejection:
    """One of this device's changes that did not happen, for an alert.

    ``source`` says who refused it: the service (a push verdict, or a pull showing
    it never took the event) or the console itself while rebasing on others'
    events. ``description`` says what was attempted ("Call A042 to Counter 2"),
    ``reason`` why not ("A042 was already called at Counter 1; it cannot be called").
    """

    event_id: str
    ticket_number: str | None
    description: str
    reason: str
    source: Literal["service", "rebase"]


@dataclass(frozen=True, slots=True)
class Alert:
    """A stored rejection or numbering warning, until staff acknowledge it."""

    id: int
    kind: AlertKind
    event_id: str | None
    ticket_number: str | None
    description: str
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ConsoleState:
    """What the console shows besides the queues, as of one read (see ``console_state``)."""

    counters: list[CounterView]
    counter: CounterView | None  # the console's own counter, when it has chosen one
    current: TicketView | None  # that counter's current ticket
    parked: list[TicketView]  # tickets parked at that counter, oldest first
    last_synced_at: datetime | None
    alerts: list[Alert]  # not yet acknowledged, oldest first
    outbox: int = 0  # changes made here not yet sent (the outbox's pending and void rows)


@dataclass(frozen=True, slots=True)
class AppliedPull:
    stored: int  # confirmed events new to this cache
    cursor: int
    has_more: bool
    confirmed_own: int  # outbox rows the page showed the service has
    rebased: bool  # pending events were replayed on top of others' events
    reference_changed: bool
    rejections: list[Rejection]


def ticket_number(state: BranchState, event: EventBase) -> str | None:
    if isinstance(event, TicketIssued):
        return event.number
    ticket = state.tickets.get(getattr(event, "ticket_id", ""))
    return ticket.number if ticket else None


def describe(state: BranchState, event: EventBase) -> str:
    """What ``event`` attempted, in a member of staff's words."""
    number = ticket_number(state, event) or "a ticket"

    def counter(counter_id: str | None) -> str:
        found = state.counters.get(counter_id or "")
        return found.name if found else "a counter"

    def service(service_id: str) -> str:
        found = state.services.get(service_id)
        return found.name if found else "another service"

    match event:
        case TicketIssued():
            return f"Issue {number} for {service(event.service_id)}"
        case TicketCalled():
            return f"Call {number} to {counter(event.counter_id)}"
        case TicketRecalled():
            return f"Recall {number}"
        case ServiceStarted():
            return f"Start serving {number}"
        case TicketCompleted():
            return f"Complete {number}"
        case TicketNoShow():
            return f"Mark {number} as a no-show"
        case TicketTransferred():
            return f"Transfer {number} to {service(event.to_service_id)}"
        case TicketParked():
            return f"Park {number}"
        case TicketReturned():
            return f"Return {number} to the queue"
        case TicketCancelled():
            return f"Cancel {number}"
        case CounterOpened():
            return f"Open {counter(event.counter_id)}"
        case CounterClosed():
            return f"Close {counter(event.counter_id)}"
        case CounterPaused():
            return f"Pause {counter(event.counter_id)}"
        case CounterResumed():
            return f"Resume {counter(event.counter_id)}"
    return f"Change {event.id}"  # pragma: no cover - every event type is listed above
