"""Value objects: what each accepts, how it normalises, and how it refuses bad input."""

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from core.errors import InvalidValue
from core.values import (
    BusinessDay,
    EmailAddress,
    PhoneNumber,
    PriorityClass,
    ServiceCode,
    TicketNumber,
    TimeZoneName,
)

BERLIN = TimeZoneName("Europe/Berlin")
NEW_YORK = TimeZoneName("America/New_York")


def rejects(parse, *args, field):
    """Call ``parse`` expecting InvalidValue for ``field``; returns the message."""
    with pytest.raises(InvalidValue) as caught:
        parse(*args)
    assert caught.value.field == field
    assert str(caught.value) == f"{field}: {caught.value.message}"
    return caught.value.message


# -- ticket numbers and service codes ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "prefix", "number", "shown"),
    [
        ("a42", "A", 42, "A042"),
        ("A042", "A", 42, "A042"),
        ("A-7", "A", 7, "A007"),
        (" tx-12 ", "TX", 12, "TX012"),
        ("abc9999", "ABC", 9999, "ABC9999"),
        ("B1", "B", 1, "B001"),
    ],
)
def test_ticket_number_accepted_forms_are_normalised(text, prefix, number, shown):
    parsed = TicketNumber.parse(text)
    assert (parsed.prefix, parsed.number) == (prefix, number)
    assert str(parsed) == shown
    assert TicketNumber.parse(shown) == parsed


@pytest.mark.parametrize(
    "text", ["42", "A", "", "ABCD1", "A12345", "A 42", "A--4", "4A", "Ä1", "A4.2"]
)
def test_ticket_number_malformed_text_is_rejected_naming_it(text):
    message = rejects(TicketNumber.parse, text, field="number")
    assert repr(text) in message
    assert "letters then digits" in message


@pytest.mark.parametrize("text", ["A0", "A-0000"])
def test_ticket_number_zero_is_out_of_range(text):
    assert "ticket number 0 is outside 1..9999" in rejects(TicketNumber.parse, text, field="number")
    # Parsed numbers are remembered; a refusal never is.
    assert "outside" in rejects(TicketNumber.parse, text, field="number")


def test_ticket_number_subclasses_parse_to_their_own_class():
    class Shown(TicketNumber):
        pass

    assert TicketNumber.parse("a-7") == TicketNumber("A", 7)
    assert type(Shown.parse("A7")) is Shown
    assert type(TicketNumber.parse("A7")) is TicketNumber


def test_ticket_number_built_directly_validates_its_parts():
    assert "'a'" in rejects(TicketNumber, "a", 1, field="service_code")
    assert "10000" in rejects(TicketNumber, "A", 10000, field="number")


def test_ticket_numbers_order_by_prefix_then_number():
    numbers = [TicketNumber.parse(t) for t in ("B1", "A10", "A2")]
    assert [str(n) for n in sorted(numbers)] == ["A002", "A010", "B001"]


@pytest.mark.parametrize(("text", "code"), [("a", "A"), (" tx ", "TX"), ("ABC", "ABC")])
def test_service_code_is_upper_cased_and_stripped(text, code):
    assert str(ServiceCode.parse(text)) == code


@pytest.mark.parametrize(("text", "shown"), [("abcd", "ABCD"), ("", ""), ("A1", "A1"), ("É", "É")])
def test_service_code_must_be_one_to_three_letters(text, shown):
    message = rejects(ServiceCode.parse, text, field="service_code")
    assert repr(shown) in message
    assert "1 to 3 capital letters" in message


# -- priority ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("normal", PriorityClass.NORMAL),
        (" Priority ", PriorityClass.PRIORITY),
        ("URGENT", PriorityClass.URGENT),
        (0, PriorityClass.NORMAL),
        (1, PriorityClass.PRIORITY),
        (2, PriorityClass.URGENT),
        ("2", PriorityClass.URGENT),
        (PriorityClass.PRIORITY, PriorityClass.PRIORITY),
    ],
)
def test_priority_by_name_or_number(value, expected):
    assert PriorityClass.parse(value) is expected


def test_priority_classes_rank_urgent_over_priority_over_normal():
    assert PriorityClass.URGENT > PriorityClass.PRIORITY > PriorityClass.NORMAL


@pytest.mark.parametrize("value", [3, -1, "-1", "vip", "", True, "1.0"])
def test_priority_unknown_values_are_rejected_naming_them(value):
    message = rejects(PriorityClass.parse, value, field="priority")
    assert message.startswith(f"{value!r} is not a priority class")
    assert "normal, priority, urgent" in message


# -- e-mail and phone ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("alice@example.com", "alice@example.com"),
        ("  Alice.Smith@Example.COM ", "Alice.Smith@example.com"),
        ("bob+queue@Sub.Example.org", "bob+queue@sub.example.org"),
    ],
)
def test_email_is_stripped_and_its_domain_lower_cased(text, normalised):
    parsed = EmailAddress.parse(text)
    assert str(parsed) == normalised
    assert EmailAddress.parse(normalised) == parsed


@pytest.mark.parametrize(
    "text", ["alice", "alice@", "@example.com", "alice@example", "a b@example.com", ""]
)
def test_email_invalid_addresses_are_rejected_naming_them(text):
    message = rejects(EmailAddress.parse, text, field="email")
    assert f"{text!r} is not a valid e-mail address" in message


@pytest.mark.parametrize(
    ("text", "region", "e164"),
    [
        ("+49 151 23456789", None, "+4915123456789"),
        ("+49 (0)151 2345-6789", None, "+4915123456789"),
        ("+4915123456789", None, "+4915123456789"),
        ("0151 23456789", "DE", "+4915123456789"),
        ("+1 212-555-0123", None, "+12125550123"),
        ("(212) 555-0123", "US", "+12125550123"),
    ],
)
def test_phone_is_normalised_to_e164(text, region, e164):
    assert str(PhoneNumber.parse(text, region)) == e164


def test_phone_national_number_without_region_is_rejected():
    message = rejects(PhoneNumber.parse, "0151 23456789", field="phone")
    assert "'0151 23456789'" in message
    assert "international form" in message


@pytest.mark.parametrize("text", ["+49 123", "+1 555 0100 000", "+49 151 1", "+999 12345678"])
def test_phone_invalid_numbers_are_rejected_naming_them(text):
    message = rejects(PhoneNumber.parse, text, field="phone")
    assert repr(text) in message


def test_phone_text_that_is_no_number_is_rejected():
    assert "'call me'" in rejects(PhoneNumber.parse, "call me", field="phone")


# -- time zones and business days ------------------------------------------------


@pytest.mark.parametrize("name", ["Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata"])
def test_time_zone_accepts_iana_names(name):
    zone = TimeZoneName(name)
    assert str(zone) == name
    assert zone.zone == ZoneInfo(name)


@pytest.mark.parametrize(
    "name",
    ["+02:00", "UTC+3", "GMT+02:00", "Mars/Olympus", "Europe/Berlinn", "", " Europe/Berlin"],
)
def test_time_zone_rejects_offsets_and_unknown_names(name):
    message = rejects(TimeZoneName, name, field="time_zone")
    assert f"{name!r} is not an IANA time zone name" in message


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/localtime", "Europe/../UTC"])
def test_time_zone_rejects_paths(name):
    assert repr(name) in rejects(TimeZoneName, name, field="time_zone")


def berlin(*args):
    return datetime(*args, tzinfo=ZoneInfo("Europe/Berlin"))


def new_york(*args, fold=0):
    return datetime(*args, tzinfo=ZoneInfo("America/New_York"), fold=fold)


@pytest.mark.parametrize(
    ("instant", "day"),
    [
        (berlin(2024, 3, 1, 0, 0), date(2024, 3, 1)),
        (berlin(2024, 3, 1, 23, 59, 59), date(2024, 3, 1)),
        (datetime(2024, 2, 29, 23, 0, tzinfo=UTC), date(2024, 3, 1)),  # midnight in Berlin
        (datetime(2024, 2, 29, 22, 59, 59, tzinfo=UTC), date(2024, 2, 29)),
        (datetime(2024, 7, 1, 22, 30, tzinfo=UTC), date(2024, 7, 2)),  # summer: UTC+2
        (datetime(2024, 3, 1, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo")), date(2024, 3, 1)),
    ],
)
def test_business_day_starting_at_midnight_is_the_local_date(instant, day):
    assert BusinessDay.of(instant, BERLIN).day == day


@pytest.mark.parametrize(
    ("zone", "instant", "day"),
    [
        # Berlin springs forward on 2024-03-31 (02:00 -> 03:00) and falls back on 2024-10-27.
        (BERLIN, berlin(2024, 3, 31, 3, 59), date(2024, 3, 30)),
        (BERLIN, berlin(2024, 3, 31, 4, 0), date(2024, 3, 31)),
        (BERLIN, datetime(2024, 3, 31, 1, 59, tzinfo=UTC), date(2024, 3, 30)),  # 03:59 CEST
        (BERLIN, datetime(2024, 3, 31, 2, 0, tzinfo=UTC), date(2024, 3, 31)),  # 04:00 CEST
        (BERLIN, datetime(2024, 10, 27, 2, 59, tzinfo=UTC), date(2024, 10, 26)),  # 03:59 CET
        (BERLIN, datetime(2024, 10, 27, 3, 0, tzinfo=UTC), date(2024, 10, 27)),  # 04:00 CET
        (BERLIN, datetime(2024, 10, 27, 0, 30, tzinfo=UTC), date(2024, 10, 26)),  # 02:30 CEST
        (BERLIN, datetime(2024, 10, 27, 1, 30, tzinfo=UTC), date(2024, 10, 26)),  # 02:30 CET
        # New York springs forward on 2024-03-10 and falls back on 2024-11-03 (at 02:00).
        (NEW_YORK, datetime(2024, 3, 10, 7, 59, tzinfo=UTC), date(2024, 3, 9)),  # 03:59 EDT
        (NEW_YORK, datetime(2024, 3, 10, 8, 0, tzinfo=UTC), date(2024, 3, 10)),  # 04:00 EDT
        (NEW_YORK, datetime(2024, 11, 3, 8, 59, tzinfo=UTC), date(2024, 11, 2)),  # 03:59 EST
        (NEW_YORK, datetime(2024, 11, 3, 9, 0, tzinfo=UTC), date(2024, 11, 3)),  # 04:00 EST
        (NEW_YORK, new_york(2024, 11, 3, 1, 30, fold=1), date(2024, 11, 2)),
        (NEW_YORK, datetime(2024, 11, 4, 3, 0, tzinfo=UTC), date(2024, 11, 3)),  # 22:00 EST
    ],
)
def test_business_day_starting_at_four_across_dst(zone, instant, day):
    assert BusinessDay.of(instant, zone, day_starts_at_min=4 * 60).day == day


def test_business_day_boundary_follows_local_wall_clock_over_a_dst_night():
    # The day that loses an hour in Berlin still starts at 04:00 local on both sides.
    start_before = datetime(2024, 3, 30, 3, 0, tzinfo=UTC)  # 04:00 CET
    start_after = datetime(2024, 3, 31, 2, 0, tzinfo=UTC)  # 04:00 CEST, 23 hours later
    assert start_after - start_before == timedelta(hours=23)
    for instant, day in [
        (start_before - timedelta(seconds=1), date(2024, 3, 29)),
        (start_before, date(2024, 3, 30)),
        (start_after - timedelta(seconds=1), date(2024, 3, 30)),
        (start_after, date(2024, 3, 31)),
    ]:
        assert BusinessDay.of(instant, BERLIN, 240).day == day


def test_business_day_with_fixed_offset_instant_matches_utc_instant():
    in_plus_three = datetime(2024, 3, 1, 2, 30, tzinfo=timezone(timedelta(hours=3)))
    assert BusinessDay.of(in_plus_three, BERLIN, 0).day == date(2024, 3, 1)
    assert BusinessDay.of(in_plus_three, BERLIN, 60).day == date(2024, 2, 29)


def test_business_day_rejects_a_naive_datetime():
    message = rejects(BusinessDay.of, datetime(2024, 3, 1, 9, 0), BERLIN, field="instant")
    assert "2024-03-01T09:00:00" in message
    assert "naive" in message


@pytest.mark.parametrize("minutes", [-1, 1440, 10_000])
def test_business_day_start_must_be_within_the_day(minutes):
    instant = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    message = rejects(BusinessDay.of, instant, BERLIN, minutes, field="day_starts_at_min")
    assert str(minutes) in message
    assert "0 and 1439" in message


def test_business_day_parse_and_text_form():
    day = BusinessDay.parse(" 2024-03-01 ")
    assert day == BusinessDay(date(2024, 3, 1))
    assert str(day) == "2024-03-01"
    assert BusinessDay.parse("2024-03-01") < BusinessDay.parse("2024-03-02")


@pytest.mark.parametrize("text", ["2024-02-30", "01.03.2024", "tomorrow", ""])
def test_business_day_parse_rejects_non_dates(text):
    assert repr(text) in rejects(BusinessDay.parse, text, field="business_day")
