"""Queue events on the wire: JSON round trips, stable output, and precise refusals."""

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from uuid import UUID

import pytest

from core.errors import MalformedEvent
from core.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    CounterClosed,
    CounterOpened,
    CounterPaused,
    CounterResumed,
    Customer,
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
    event_to_dict,
    event_to_json,
    parse_event,
    validate_events,
)
from core.values import Channel, Outcome, TransferPosition

EVENT_ID = "01900000-0000-7000-8000-000000000001"
AT = datetime(2024, 3, 1, 9, 0, 0, 123000, tzinfo=UTC)
BASE = {
    "id": UUID(EVENT_ID),
    "branch_id": "branch-1",
    "occurred_at": AT,
    "actor_id": "staff-1",
    "device_id": "device-7",
    "device_seq": 12,
}

ONE_OF_EACH = [
    TicketIssued(
        **BASE,
        ticket_id="tkt-1",
        service_id="svc-accounts",
        number="A042",
        business_day=date(2024, 3, 1),
        channel=Channel.APPOINTMENT,
        priority=2,
        appointment_at=datetime(2024, 3, 1, 11, 30, tzinfo=timezone(timedelta(hours=1))),
        customer=Customer(
            name="Ada Lovelace",
            email="Ada@Example.COM",
            phone="+49 151 23456789",
            notes="needs a ramp",
        ),
    ),
    TicketIssued(
        id=UUID(EVENT_ID),
        branch_id="branch-1",
        occurred_at=AT,
        ticket_id="tkt-2",
        service_id="svc-loans",
        number="L7",
        business_day=date(2024, 3, 1),
    ),
    TicketCalled(**BASE, ticket_id="tkt-1", counter_id="ctr-3"),
    TicketRecalled(**BASE, ticket_id="tkt-1", counter_id="ctr-3"),
    ServiceStarted(**BASE, ticket_id="tkt-1", counter_id="ctr-3"),
    TicketCompleted(**BASE, ticket_id="tkt-1", counter_id="ctr-3", outcome=Outcome.REFERRED),
    TicketNoShow(**BASE, ticket_id="tkt-1", counter_id="ctr-3"),
    TicketTransferred(
        **BASE,
        ticket_id="tkt-1",
        from_service_id="svc-accounts",
        to_service_id="svc-loans",
        position=TransferPosition.FRONT,
        counter_id="ctr-3",
    ),
    TicketTransferred(
        **BASE, ticket_id="tkt-1", from_service_id="svc-accounts", to_service_id="svc-loans"
    ),
    TicketParked(**BASE, ticket_id="tkt-1", counter_id="ctr-3", note="fetching ID"),
    TicketReturned(**BASE, ticket_id="tkt-1"),
    TicketCancelled(**BASE, ticket_id="tkt-1", reason="left the branch"),
    CounterOpened(**BASE, counter_id="ctr-3"),
    CounterClosed(**BASE, counter_id="ctr-3"),
    CounterPaused(**BASE, counter_id="ctr-3", reason="lunch"),
    CounterResumed(**BASE, counter_id="ctr-3"),
]


def test_the_samples_cover_every_event_type():
    assert {e.type for e in ONE_OF_EACH} == set(EVENT_TYPES)
    assert len(EVENT_TYPES) == 14
    for kind, cls in EVENT_TYPES.items():
        assert cls.model_fields["type"].default == kind


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda e: e.type)
def test_json_round_trip(event):
    text = event_to_json(event)
    parsed = parse_event(text)
    assert type(parsed) is type(event)
    assert parsed == event
    assert parse_event(text.encode()) == event
    assert parse_event(event_to_dict(event)) == event
    assert event_to_json(parsed) == text


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda e: e.type)
def test_json_output_is_stable_compact_with_sorted_keys(event):
    text = event_to_json(event)
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert text == json.dumps(data, separators=(",", ":"), sort_keys=True)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["type"] == event.type
    assert data["id"] == EVENT_ID
    assert None not in data.values()  # absent rather than null


def test_json_form_of_an_issued_ticket_is_pinned():
    assert event_to_json(ONE_OF_EACH[1]) == (
        '{"branch_id":"branch-1","business_day":"2024-03-01","channel":"walk_in",'
        f'"id":"{EVENT_ID}","number":"L007","occurred_at":"2024-03-01T09:00:00.123000Z",'
        '"priority":0,"schema_version":1,"service_id":"svc-loans","ticket_id":"tkt-2",'
        '"type":"ticket.issued"}'
    )


def test_customer_details_are_normalised_on_the_way_in():
    customer = ONE_OF_EACH[0].customer
    assert customer is not None
    assert (customer.email, customer.phone) == ("Ada@example.com", "+4915123456789")
    data = event_to_dict(ONE_OF_EACH[0])
    assert data["customer"]["phone"] == "+4915123456789"
    assert data["appointment_at"] == "2024-03-01T11:30:00+01:00"


# -- refusals ------------------------------------------------------------------------


def issued(**changes):
    """A valid serialised ticket.issued with ``changes`` (None removes a key)."""
    data = event_to_dict(ONE_OF_EACH[1])
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def refusal(data):
    with pytest.raises(MalformedEvent) as caught:
        parse_event(data)
    return caught.value


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe{", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "an event must be a JSON object, not list"),
        ('"ticket.issued"', "an event must be a JSON object, not str"),
        ("null", "an event must be a JSON object, not NoneType"),
        ("42", "an event must be a JSON object, not int"),
    ],
)
def test_input_that_is_no_json_object_is_refused(data, fragment):
    error = refusal(data)
    assert fragment in str(error)
    assert (error.field, error.event_id) == (None, None)


@pytest.mark.parametrize(
    ("version", "shown"),
    [(None, "None"), (2, "2"), (0, "0"), ("1", "'1'"), (True, "True"), (1.0, "1.0")],
)
def test_missing_or_unsupported_schema_version_is_refused(version, shown):
    error = refusal(issued(schema_version=version))  # None: no schema_version at all
    assert (error.field, error.event_id) == ("schema_version", EVENT_ID)
    assert str(error) == (
        f"event {EVENT_ID}, field 'schema_version': "
        f"unsupported schema_version {shown} (this build reads 1)"
    )


@pytest.mark.parametrize("kind", ["ticket.teleported", "TICKET.ISSUED", None, 7])
def test_unknown_event_type_is_refused(kind):
    error = refusal(issued(type=kind))  # None: no type at all
    assert (error.field, error.event_id) == ("type", EVENT_ID)
    assert f"unknown event type {kind!r}" in str(error)


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"ticket_id": None}, "ticket_id", "Field required"),
        ({"branch_id": None}, "branch_id", "Field required"),
        ({"occurred_at": None}, "occurred_at", "Field required"),
        ({"business_day": None}, "business_day", "Field required"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"ticket_id": 5}, "ticket_id", "valid string"),
        ({"ticket_id": ""}, "ticket_id", "at least 1 character"),
        ({"ticket_id": "t" * 65}, "ticket_id", "at most 64 characters"),
        ({"priority": "high"}, "priority", "valid integer"),
        ({"priority": "1"}, "priority", "valid integer"),
        ({"priority": True}, "priority", "valid integer"),
        ({"priority": 1.5}, "priority", "valid integer"),
        ({"priority": 3}, "priority", "less than or equal to 2"),
        ({"priority": -1}, "priority", "greater than or equal to 0"),
        ({"device_seq": 0}, "device_seq", "greater than or equal to 1"),
        ({"device_seq": "3"}, "device_seq", "valid integer"),
        ({"channel": "pigeon"}, "channel", "'walk_in', 'remote' or 'appointment'"),
        ({"business_day": "2024-02-30"}, "business_day", "valid date"),
        ({"business_day": 0}, "business_day", "0 is a number, not an ISO 8601 string"),
        ({"occurred_at": 1709283600}, "occurred_at", "1709283600 is a number"),
        ({"occurred_at": "yesterday"}, "occurred_at", "valid datetime"),
        ({"occurred_at": "2024-03-01T09:00:00"}, "occurred_at", "timezone info"),
        ({"appointment_at": "2024-03-01T11:00:00"}, "appointment_at", "timezone info"),
        ({"occurred_at": "9999-12-31T23:00:00-05:00"}, "occurred_at", "range of dates"),
        ({"appointment_at": "0001-01-01T00:30:00+01:00"}, "appointment_at", "range of dates"),
        ({"number": "42"}, "number", "'42' is not a ticket number"),
        ({"number": "A0"}, "number", "ticket number 0 is outside 1..9999"),
        ({"customer": "Ada"}, "customer", "valid dictionary"),
        ({"customer": {"email": "ada"}}, "customer.email", "'ada' is not a valid e-mail"),
        ({"customer": {"phone": "0151 23456789"}}, "customer.phone", "'0151 23456789'"),
        ({"customer": {"phone": "+49 123"}}, "customer.phone", "'+49 123' is not a valid phone"),
        ({"customer": {"vip": True}}, "customer.vip", "Extra inputs are not permitted"),
    ],
)
def test_invalid_fields_are_refused_naming_the_event_and_the_field(changes, field, fragment):
    error = refusal(issued(**changes))
    assert error.field == field
    assert error.event_id == EVENT_ID
    assert str(error).startswith(f"event {EVENT_ID}, field '{field}': ")
    assert fragment in error.message


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "01900000-0000-7000-8000-00000000000"])
def test_a_bad_uuid_is_refused_naming_it(bad_id):
    error = refusal(issued(id=bad_id))
    assert (error.field, error.event_id) == ("id", bad_id)
    assert str(error).startswith(f"event {bad_id}, field 'id': ")
    assert "valid UUID" in error.message


def test_an_event_without_an_id_names_only_the_field():
    error = refusal(issued(id=None))
    assert (error.field, error.event_id) == ("id", None)
    assert str(error) == "field 'id': Field required"


def test_a_non_string_id_is_refused_without_naming_an_event():
    error = refusal(json.dumps(issued(id=5)))
    assert (error.field, error.event_id) == ("id", None)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "counter.paused", "counter_id": "ctr-1"}, "reason"),
        ({"type": "counter.paused", "counter_id": "ctr-1", "reason": ""}, "reason"),
        (
            {"type": "ticket.completed", "ticket_id": "t", "counter_id": "c", "outcome": "ok"},
            "outcome",
        ),
        ({"type": "ticket.transferred", "ticket_id": "t", "from_service_id": "a"}, "to_service_id"),
        ({"type": "ticket.parked", "ticket_id": "t"}, "counter_id"),
        ({"type": "ticket.called", "ticket_id": "t", "counter_id": "c", "number": "A1"}, "number"),
    ],
)
def test_each_event_type_checks_its_own_fields(data, field):
    base = {
        k: v
        for k, v in event_to_dict(ONE_OF_EACH[2]).items()
        if k not in ("ticket_id", "counter_id")
    }
    error = refusal({**base, **data})
    assert (error.field, error.event_id) == (field, EVENT_ID)


def test_events_are_immutable():
    event = ONE_OF_EACH[2]
    with pytest.raises(ValueError, match="frozen"):
        event.ticket_id = "other"


def test_a_batch_validated_in_one_call_gives_what_parse_event_gives_each():
    bodies = [event_to_dict(e) for e in ONE_OF_EACH]
    assert validate_events(bodies) == [parse_event(b) for b in bodies]
    assert validate_events([]) == []


@pytest.mark.parametrize(
    "bad",
    [
        issued(schema_version=True),
        issued(schema_version=1.0),
        issued(schema_version=None),
        issued(type="ticket.teleported"),
        issued(priority=True),
        issued(occurred_at=1709283600),
        issued(occurred_at="9999-12-31T23:00:00-05:00"),
        issued(number="A0"),
        issued(customer={"email": "ada"}),
        issued(colour="red"),
        "not an object",
    ],
)
def test_a_batch_with_any_event_parse_event_refuses_is_left_to_parse_event(bad):
    """None (parse one by one for the error) wherever that event sits in the batch."""
    good = [event_to_dict(e) for e in ONE_OF_EACH[:3]]
    for at in range(len(good) + 1):
        assert validate_events([*good[:at], bad, *good[at:]]) is None


def test_validators_are_built_at_first_use_or_by_build_validators():
    # A console shows its window before it parses or creates any event, so importing
    # the events builds no validator; build_validators (or a first use) does.
    script = """
import core.events as ev
types = (ev.Customer, *ev.EVENT_TYPES.values())
assert not any(t.__pydantic_complete__ for t in types), "built at import"
ev.TicketRecalled(id=ev.UUID(int=1), branch_id="b", occurred_at="2026-01-01T09:00:00Z",
                  ticket_id="t", counter_id="c")
assert ev.TicketRecalled.__pydantic_complete__
assert not ev.TicketIssued.__pydantic_complete__, "one type's first use built another"
ev.build_validators()
assert all(t.__pydantic_complete__ for t in types), "build_validators left some unbuilt"
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
