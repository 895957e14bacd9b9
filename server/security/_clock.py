"""Aware-UTC time helpers shared by the security modules."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def require_aware(value: datetime, name: str = "time") -> datetime:
    """Return ``value`` in UTC, refusing naive datetimes.

    A naive datetime silently takes the machine's zone; in security decisions
    (expiry, lockout) that is a bug waiting to happen, so it is an error here.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)
