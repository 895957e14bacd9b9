"""Commands: what a member of staff, a kiosk or an integration asks a branch to do.

A command is an intention; :func:`core.machine.decide` turns it into events or
refuses it. ``at`` is the caller's clock (it decides the business day and which
appointments are due); ``actor_id`` is who asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.events import Customer
from core.values import Channel, Outcome, PriorityClass, TicketNumber, TransferPosition


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    at: datetime
    actor_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IssueTicket(Command):
    service_id: str
    number: TicketNumber
    channel: Channel = Channel.WALK_IN
    priority: PriorityClass = PriorityClass.NORMAL
    appointment_at: datetime | None = None
    customer: Customer | None = None
    ticket_id: str | None = None  # a fresh UUIDv7 when not given


@dataclass(frozen=True, slots=True, kw_only=True)
class CallNext(Command):
    counter_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallTicket(Command):
    counter_id: str
    ticket_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Recall(Command):
    ticket_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartService(Command):
    ticket_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Complete(Command):
    ticket_id: str
    outcome: Outcome = Outcome.SERVED


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkNoShow(Command):
    ticket_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer(Command):
    ticket_id: str
    to_service_id: str
    position: TransferPosition = TransferPosition.BACK


@dataclass(frozen=True, slots=True, kw_only=True)
class Park(Command):
    ticket_id: str
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnTicket(Command):
    ticket_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel(Command):
    ticket_id: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenCounter(Command):
    counter_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseCounter(Command):
    counter_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseCounter(Command):
    counter_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeCounter(Command):
    counter_id: str
