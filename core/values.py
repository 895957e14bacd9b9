"""Value objects: small immutable values that validate themselves.

Each ``parse`` accepts what a person or a client typed and either returns a
normalised value or raises :class:`~core.errors.InvalidValue` whose message says
what is wrong and what is expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import IntEnum, StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import InvalidValue

_SERVICE_CODE = re.compile(r"[A-Z]{1,3}")
_TICKET_NUMBER = re.compile(r"([A-Za-z]{1,3})-?(\d{1,4})")
MAX_TICKET_NUMBER = 9999


@dataclass(frozen=True, slots=True)
class ServiceCode:
    """The letters a service puts in front of its ticket numbers: ``A``, ``TX``."""

    value: str

    def __post_init__(self) -> None:
        if not _SERVICE_CODE.fullmatch(self.value):
            raise InvalidValue(
                "service_code", f"{self.value!r} is not 1 to 3 capital letters (e.g. 'A', 'TX')"
            )

    @classmethod
    def parse(cls, text: str) -> ServiceCode:
        return cls(text.strip().upper())

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, order=True)
class TicketNumber:
    """What the customer sees and hears: service prefix plus a number, ``A042``."""

    prefix: str
    number: int

    def __post_init__(self) -> None:
        ServiceCode(self.prefix)
        if not 1 <= self.number <= MAX_TICKET_NUMBER:
            raise InvalidValue(
                "number", f"ticket number {self.number} is outside 1..{MAX_TICKET_NUMBER}"
            )

    @classmethod
    def parse(cls, text: str) -> TicketNumber:
        # Every issued event is checked through here (a first sync reads tens of
        # thousands), and a branch's numbers repeat day after day: remembered.
        return _parse_ticket_number(text) if cls is TicketNumber else cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> TicketNumber:
        match = _TICKET_NUMBER.fullmatch(text.strip())
        if not match:
            raise InvalidValue(
                "number", f"{text!r} is not a ticket number (letters then digits, e.g. 'A042')"
            )
        return cls(match.group(1).upper(), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.prefix}{self.number:03d}"


@lru_cache(maxsize=16_384)
def _parse_ticket_number(text: str) -> TicketNumber:
    return TicketNumber._parse(text)  # immutable: one instance can serve every caller


class PriorityClass(IntEnum):
    """Higher classes are called first, whatever their join time."""

    NORMAL = 0
    PRIORITY = 1  # e.g. elderly, pregnant, disabled customers
    URGENT = 2

    @classmethod
    def parse(cls, value: str | int) -> PriorityClass:
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        elif isinstance(value, str):
            key = value.strip().upper()
            if key in cls.__members__:
                return cls[key]
            if key.isdigit():
                return cls.parse(int(key))
        names = ", ".join(m.name.lower() for m in cls)
        raise InvalidValue("priority", f"{value!r} is not a priority class ({names})")


class Channel(StrEnum):
    """How the customer joined the queue."""

    WALK_IN = "walk_in"
    REMOTE = "remote"
    APPOINTMENT = "appointment"


class Outcome(StrEnum):
    """How a served ticket ended, recorded on completion."""

    SERVED = "served"
    REFERRED = "referred"
    UNRESOLVED = "unresolved"


class TransferPosition(StrEnum):
    """Where a transferred ticket joins the target queue."""

    FRONT = "front"
    BACK = "back"
    ORIGINAL = "original"  # by its original join time


@dataclass(frozen=True, slots=True)
class EmailAddress:
    """A deliverable-looking e-mail address, normalised (domain lower-cased)."""

    value: str

    @classmethod
    def parse(cls, text: str) -> EmailAddress:
        # Imported on first use: the two validators take 60 ms to import, and a
        # console starts without ever parsing a customer's contact details.
        import email_validator

        try:
            info = email_validator.validate_email(text.strip(), check_deliverability=False)
        except email_validator.EmailNotValidError as exc:
            raise InvalidValue("email", f"{text!r} is not a valid e-mail address: {exc}") from exc
        return cls(info.normalized)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A phone number in E.164 form, ``+4915112345678``: what SMS gateways want."""

    value: str

    @classmethod
    def parse(cls, text: str, default_region: str | None = None) -> PhoneNumber:
        """Parse ``text``; without ``default_region`` it must start with ``+``."""
        import phonenumbers  # on first use, see EmailAddress.parse

        try:
            number = phonenumbers.parse(text, default_region)
        except phonenumbers.NumberParseException as exc:
            raise InvalidValue(
                "phone", f"{text!r} is not a phone number in international form (+CC...): {exc}"
            ) from exc
        if not phonenumbers.is_valid_number(number):
            raise InvalidValue("phone", f"{text!r} is not a valid phone number")
        return cls(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))

    def __str__(self) -> str:
        return self.value


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class TimeZoneName:
    """An IANA time zone name such as ``Europe/Berlin`` (not an offset like ``+02:00``)."""

    value: str

    def __post_init__(self) -> None:
        if not self.value or self.value != self.value.strip() or ".." in self.value:
            raise InvalidValue("time_zone", f"{self.value!r} is not an IANA time zone name")
        try:
            _zone(self.value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidValue(
                "time_zone",
                f"{self.value!r} is not an IANA time zone name (e.g. 'Europe/Berlin')",
            ) from exc

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.value)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, order=True)
class BusinessDay:
    """The branch-local day a ticket belongs to; numbering restarts every day.

    A branch's day may start after midnight (``day_starts_at_min``) so a late
    shift past 00:00 still counts to the previous day. Computed with zoneinfo,
    so DST changes move nothing: the day is the local calendar date of
    ``instant - start offset``.
    """

    day: date

    @classmethod
    def of(cls, instant: datetime, zone: TimeZoneName, day_starts_at_min: int = 0) -> BusinessDay:
        if instant.tzinfo is None:
            raise InvalidValue(
                "instant", f"{instant.isoformat()} is a naive datetime; pass an aware one"
            )
        if not 0 <= day_starts_at_min < 24 * 60:
            raise InvalidValue(
                "day_starts_at_min", f"{day_starts_at_min} is not between 0 and 1439 minutes"
            )
        local = instant.astimezone(zone.zone)
        return cls((local - timedelta(minutes=day_starts_at_min)).date())

    @classmethod
    def parse(cls, text: str) -> BusinessDay:
        try:
            return cls(date.fromisoformat(text.strip()))
        except ValueError as exc:
            raise InvalidValue("business_day", f"{text!r} is not a date (YYYY-MM-DD)") from exc

    def __str__(self) -> str:
        return self.day.isoformat()
