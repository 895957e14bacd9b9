"""Query parameter types whose every valid value the database can also store.

A signed 64-bit integer is the widest both SQLite and PostgreSQL compare with;
a larger cursor would crash the driver (a 500) instead of answering 422. An
aware time is compared in UTC, and near the ends of the calendar the conversion
itself overflows ("9999-12-31T23:00:00-05:00"), so it is refused up front.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime

MAX_SQL_INT: Final = 2**63 - 1


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the range of dates that can be stored") from None


UtcInstant = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""An ISO 8601 time with a UTC offset, converted to UTC."""
