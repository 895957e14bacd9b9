"""Queue events: the facts a branch's history is made of, and their JSON form.

Every change to a branch is one of these immutable events. They serialise to a
flat JSON object with ``schema_version`` and ``type``; :func:`parse_event`
rejects unknown types, unknown or missing fields and wrong types with a
:class:`~core.errors.MalformedEvent` naming the event and the field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from core.errors import InvalidValue, MalformedEvent
from core.values import Channel, EmailAddress, Outcome, PhoneNumber, TicketNumber, TransferPosition

SCHEMA_VERSION = 1

Id = Annotated[str, Field(min_length=1, max_length=64)]
Text = Annotated[str, Field(max_length=500)]


def _not_a_number(value: Any) -> Any:
    # Lax validation would read a bare number as a Unix timestamp; the wire form is ISO 8601.
    if isinstance(value, int | float):
        raise ValueError(f"{value!r} is a number, not an ISO 8601 string")
    return value


def _utc(value: datetime) -> datetime:
    # One zone for every stored instant: arithmetic between two datetimes of the same
    # named zone is wall-clock arithmetic in Python, an hour off across a DST change.
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00: a ValueError names the field
        raise ValueError("is outside the range of dates that can be stored") from None


def _storable(value: datetime) -> datetime:
    # Stored in UTC: refuse what has no UTC form, keep the offset given. Only an
    # instant within a day of the first or last representable one can lack it.
    if not 1 < value.year < 9999:
        _utc(value)
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(_storable)]
Day = Annotated[date, BeforeValidator(_not_a_number)]


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


@lru_cache(maxsize=16_384)
def _ticket_number(value: str) -> str:
    return str(TicketNumber.parse(value))  # the normal form; a branch's numbers repeat daily


def _email(value: str) -> str:
    return str(EmailAddress.parse(value))


def _phone(value: str) -> str:
    return str(PhoneNumber.parse(value))


class Customer(BaseModel):
    """What the branch knows about the person holding a ticket (all optional)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: Annotated[str, Field(max_length=200)] | None = None
    email: Annotated[str, AfterValidator(_email)] | None = None
    phone: Annotated[str, AfterValidator(_phone)] | None = None
    notes: Annotated[str, Field(max_length=1000)] | None = None


class EventBase(BaseModel):
    """Fields every event carries. ``device_*`` are stamped when written to an outbox.

    Validators are built at first use (``defer_build``), not at import: a console
    shows its window from the cache before it parses or creates any event, and
    building the fourteen event types took about a tenth of its start.
    :func:`build_validators` builds them ahead of the first request or pull.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    schema_version: Literal[1] = 1
    id: UUID
    branch_id: Id
    occurred_at: Instant  # device clock: for display and durations, never for order
    actor_id: Id | None = None
    device_id: Id | None = None
    device_seq: Annotated[int, Field(ge=1, strict=True)] | None = None


class TicketIssued(EventBase):
    type: Literal["ticket.issued"] = "ticket.issued"
    ticket_id: Id
    service_id: Id
    number: Annotated[str, AfterValidator(_ticket_number)]
    business_day: Day
    channel: Channel = Channel.WALK_IN
    priority: Annotated[int, Field(ge=0, le=2, strict=True)] = 0
    appointment_at: Instant | None = None
    customer: Customer | None = None


class TicketCalled(EventBase):
    type: Literal["ticket.called"] = "ticket.called"
    ticket_id: Id
    counter_id: Id


class TicketRecalled(EventBase):
    type: Literal["ticket.recalled"] = "ticket.recalled"
    ticket_id: Id
    counter_id: Id


class ServiceStarted(EventBase):
    type: Literal["ticket.service_started"] = "ticket.service_started"
    ticket_id: Id
    counter_id: Id


class TicketCompleted(EventBase):
    type: Literal["ticket.completed"] = "ticket.completed"
    ticket_id: Id
    counter_id: Id
    outcome: Outcome = Outcome.SERVED


class TicketNoShow(EventBase):
    type: Literal["ticket.no_show"] = "ticket.no_show"
    ticket_id: Id
    counter_id: Id


class TicketTransferred(EventBase):
    type: Literal["ticket.transferred"] = "ticket.transferred"
    ticket_id: Id
    from_service_id: Id
    to_service_id: Id
    position: TransferPosition = TransferPosition.BACK
    counter_id: Id | None = None  # the counter it left, when it was called or being served


class TicketParked(EventBase):
    type: Literal["ticket.parked"] = "ticket.parked"
    ticket_id: Id
    counter_id: Id
    note: Text | None = None


class TicketReturned(EventBase):
    type: Literal["ticket.returned"] = "ticket.returned"
    ticket_id: Id


class TicketCancelled(EventBase):
    type: Literal["ticket.cancelled"] = "ticket.cancelled"
    ticket_id: Id
    reason: Text | None = None


class CounterOpened(EventBase):
    type: Literal["counter.opened"] = "counter.opened"
    counter_id: Id


class CounterClosed(EventBase):
    type: Literal["counter.closed"] = "counter.closed"
    counter_id: Id


class CounterPaused(EventBase):
    type: Literal["counter.paused"] = "counter.paused"
    counter_id: Id
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class CounterResumed(EventBase):
    type: Literal["counter.resumed"] = "counter.resumed"
    counter_id: Id


QueueEvent = Annotated[
    TicketIssued
    | TicketCalled
    | TicketRecalled
    | ServiceStarted
    | TicketCompleted
    | TicketNoShow
    | TicketTransferred
    | TicketParked
    | TicketReturned
    | TicketCancelled
    | CounterOpened
    | CounterClosed
    | CounterPaused
    | CounterResumed,
    Field(discriminator="type"),
]

EVENT_TYPES: dict[str, type[EventBase]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        TicketIssued,
        TicketCalled,
        TicketRecalled,
        ServiceStarted,
        TicketCompleted,
        TicketNoShow,
        TicketTransferred,
        TicketParked,
        TicketReturned,
        TicketCancelled,
        CounterOpened,
        CounterClosed,
        CounterPaused,
        CounterResumed,
    )
}


@cache
def _adapter() -> TypeAdapter[QueueEvent]:
    return TypeAdapter(QueueEvent)


@cache
def _list_adapter() -> TypeAdapter[list[QueueEvent]]:
    return TypeAdapter(list[QueueEvent])


def build_validators() -> None:
    """Build every event type's validator and serializer now rather than at first use.

    The service calls it at startup and a console's sync thread before its first
    pull, so that no request or command pays for it.
    """
    _adapter()
    _list_adapter()
    Customer.model_rebuild()
    for cls in EVENT_TYPES.values():
        cls.model_rebuild()


def event_to_dict(event: EventBase) -> dict[str, Any]:
    """The JSON-ready dict of an event (UUIDs and datetimes as strings)."""
    return event.model_dump(mode="json", exclude_none=True)


def event_to_json(event: EventBase) -> str:
    return json.dumps(event_to_dict(event), separators=(",", ":"), sort_keys=True)


def parse_event(data: dict[str, Any] | str | bytes) -> EventBase:
    """Parse one serialised event, or raise :class:`MalformedEvent` saying what is wrong."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedEvent(f"not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise MalformedEvent(f"an event must be a JSON object, not {type(data).__name__}")
    event_id = data.get("id") if isinstance(data.get("id"), str) else None
    version = data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:  # true and 1.0 equal 1 in Python
        raise MalformedEvent(
            f"unsupported schema_version {version!r} (this build reads {SCHEMA_VERSION})",
            field="schema_version",
            event_id=event_id,
        )
    kind = data.get("type")
    if kind not in EVENT_TYPES:
        raise MalformedEvent(f"unknown event type {kind!r}", field="type", event_id=event_id)
    try:
        event: EventBase = _adapter().validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"][1:]) or None  # loc[0] is the union tag
        raise MalformedEvent(first["msg"], field=field, event_id=event_id) from exc
    except InvalidValue as exc:  # pragma: no cover - pydantic wraps validator errors
        raise MalformedEvent(exc.message, field=exc.field, event_id=event_id) from exc
    return event


def validate_events(bodies: Sequence[Any]) -> list[EventBase] | None:
    """Serialised events parsed in one validation call, or None if any is malformed.

    A pulled page or a pushed batch holds hundreds of events, and one call for
    all of them costs less than :func:`parse_event` for each. Only events that
    ``parse_event`` accepts pass; on None, parse them one by one for its error.
    """
    if not all(
        isinstance(b, dict)
        and type(b.get("schema_version")) is int  # true and 1.0 equal 1 in Python
        and b["schema_version"] == SCHEMA_VERSION
        and b.get("type") in EVENT_TYPES
        for b in bodies
    ):
        return None
    try:
        return list[EventBase](_list_adapter().validate_python(bodies))
    except (ValidationError, InvalidValue):
        return None
