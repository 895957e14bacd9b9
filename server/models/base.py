"""The declarative base, column types and small helpers shared by every model.

Constraint names follow a fixed convention so that Alembic migrations name
indexes and constraints the same way on SQLite and PostgreSQL, and a later
migration can drop or alter them by name.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, ForeignKey, Integer, MetaData, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from core.ids import uuid7

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONType: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntPK: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
_NO_OFFSET = timedelta(0)


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (the default of time columns)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time, stored as naive UTC and returned as aware UTC.

    Both backends then store the same thing (SQLite has no time zone type), and
    ordering and comparisons in SQL are plain. A naive datetime is refused rather
    than guessed: it would silently take the machine's local zone.
    """

    impl = DateTime(timezone=False)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"UTCDateTime needs a datetime, not {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        to_naive = self.process_bind_param

        # SQLite's DATETIME text (SQLAlchemy's default storage format) straight from
        # isoformat: the same text, without a format dict per value; the log and
        # the projection write several times per event.
        def process(value: datetime | None) -> str | None:
            if isinstance(value, datetime):
                zone = value.tzinfo
                # UTC, or a zone at UTC such as a parsed "Z" (the usual cases).
                if zone is UTC or (zone is not None and zone.utcoffset(value) == _NO_OFFSET):
                    return value.isoformat(" ", "microseconds")[:26]  # without "+00:00"
            naive = to_naive(value, dialect)
            return None if naive is None else naive.isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """The base of every QueueDesk table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        uuid.UUID: Uuid(),
        dict[str, Any]: JSONType,
        list[str]: JSONType,
    }


def uuid_pk() -> Mapped[uuid.UUID]:
    """A UUIDv7 primary key: time-ordered, so inserts land at the end of the index."""
    return mapped_column(Uuid(), primary_key=True, default=uuid7)


def tenant_fk() -> Mapped[uuid.UUID]:
    """The owning tenant: every tenant-owned row has one and is looked up by it."""
    return mapped_column(ForeignKey("tenants.id"), nullable=False, index=True)


def created_at() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), nullable=False, default=utc_now)


def one_of(column: str, values: Iterable[str]) -> str:
    """SQL text of a CHECK that ``column`` holds one of ``values`` (stable order)."""
    quoted = ", ".join(f"'{v}'" for v in sorted(values))
    return f"{column} IN ({quoted})"
