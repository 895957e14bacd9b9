"""The local cache's SQLite file: its tables and how connections to it are set up.

Everything a console knows lives in one file (see :mod:`sync.client.paths`):

- ``events``: the confirmed log, by ``server_seq``: the server's truth;
- ``outbox``: this device's events by ``device_seq`` that the server has not yet
  handed back in a pull (``pending``: never acknowledged; ``accepted``: acknowledged
  by a push, awaiting its pull; ``void``: refused locally on a rebase but still to
  push, because the server wants contiguous ``device_seq`` values);
- ``tickets``, ``counters``, ``services``: the projection the console reads;
- ``kpi_facts``, ``kpi_hours``, ``kpi_branch_hours``, ``kpi_meta``, ``kpi_dirty``: the
  KPI facts local reports aggregate, their hourly counts, and the tickets whose facts
  are still to be written (:mod:`sync.client.kpi_store`);
- ``reference``, ``sync_state``, ``device``, ``number_blocks``, ``fallback_used``,
  ``alerts``: reference data, cursor, identity, offline numbers and staff alerts;
- ``snapshot``: the confirmed state folded up to a point of ``events``, so that
  opening the file need not replay the whole log (:mod:`sync.client.snapshot`).

Durability settings come from DESIGN "Sync" 1: WAL so the UI reads while the sync
thread writes, ``synchronous=FULL`` so a committed command survives a power cut,
``busy_timeout`` so two connections wait for each other instead of failing. Every
write transaction starts with ``BEGIN IMMEDIATE``: the cache reads the generation
counter and then writes, and a deferred transaction could be overtaken in between.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)

BUSY_TIMEOUT_MS = 5000

metadata = MetaData()

sync_state = Table(
    "sync_state",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("branch_id", String, nullable=False),
    Column("cursor", Integer, nullable=False),  # last server_seq pulled
    Column("generation", Integer, nullable=False),  # bumped by every write transaction
    Column("last_synced_at", String),
)

device = Table(
    "device",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("device_id", String, nullable=False),
    Column("next_device_seq", Integer, nullable=False),
    Column("slot", Integer),  # fallback number slot; None until the service assigns one
)

reference = Table(
    "reference",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("version", String, nullable=False),
    Column("body", Text, nullable=False),  # ReferenceData JSON
)

events = Table(
    "events",
    metadata,
    Column("server_seq", Integer, primary_key=True),
    Column("event_id", String, nullable=False, unique=True),
    Column("body", Text, nullable=False),
    Column("ticket_id", String),  # the ticket it is about; NULL for counter events
    Index("ix_events_ticket_id", "ticket_id"),
)

snapshot = Table(
    "snapshot",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("format", Integer, nullable=False),
    Column("fingerprint", String, nullable=False),  # of the code that folded and encoded it
    Column("reference_version", String),  # the reference data it was folded with
    Column("server_seq", Integer, nullable=False),  # the last event it covers (0: none)
    Column("event_id", String),  # that event's id
    Column("events", Integer, nullable=False),  # rows of ``events`` up to server_seq
    Column("skipped", Integer, nullable=False),  # of those, how many did not fold
    Column("crc", Integer, nullable=False),  # CRC-32 of body
    Column("body", Text, nullable=False),  # the state as JSON
)

outbox = Table(
    "outbox",
    metadata,
    Column("device_seq", Integer, primary_key=True),
    Column("event_id", String, nullable=False, unique=True),
    Column("body", Text, nullable=False),
    Column("status", String, nullable=False),  # pending | accepted | void
    Column("server_seq", Integer),  # set once a push was accepted
    Column("created_at", String, nullable=False),
)

tickets = Table(
    "tickets",
    metadata,
    Column("id", String, primary_key=True),
    Column("number", String, nullable=False),
    Column("service_id", String, nullable=False),
    Column("business_day", String, nullable=False),
    Column("status", String, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("channel", String, nullable=False),
    Column("counter_id", String),
    Column("customer_name", String),
    Column("customer_email", String),
    Column("customer_phone", String),
    Column("customer_notes", String),
    Column("issued_at", String, nullable=False),
    Column("appointment_at", String),
    Column("segment_started_at", String),
    Column("called_at", String),
    Column("service_started_at", String),
    Column("finished_at", String),
    Column("recalls", Integer, nullable=False),
    Column("transfers", Integer, nullable=False),
    # The call-order key of a waiting ticket (core.ordering.QueueKey), NULL otherwise.
    Column("queue_priority", Integer),
    Column("queue_band", Integer),
    Column("queue_ordinal", Integer),
    Column("unsynced", Integer, nullable=False),  # 1 while a change is not yet pushed
    Column("parked_by", String),  # the counter that parked it, while it is parked
    # The console lists tickets by status (waiting queues, parked, counts) on every action.
    Index("ix_tickets_status_service", "status", "service_id"),
)

counters = Table(
    "counters",
    metadata,
    Column("id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("status", String, nullable=False),
    Column("pause_reason", String),
    Column("current_ticket_id", String),
    Column("staff_id", String),
    Column("work_profile", Text, nullable=False),  # JSON list of service ids
)

services = Table(
    "services",
    metadata,
    Column("id", String, primary_key=True),
    Column("code", String, nullable=False),
    Column("name", String, nullable=False),
    Column("target_wait_s", Integer),
    Column("active", Integer, nullable=False),
)

HOUR_COUNTS = (
    "facts",  # every fact row: a group with only uncounted rows still exists
    "issued",
    "called",
    "served",
    "no_show",
    "cancelled",
    "abandoned",
    "transfers",
    "recalls",
    "sla_eligible",
    "sla_met",
    "served_timed",  # completions with a service time
    # Exact sums of the waits and of the service times: each value is an integer
    # number of 2**-72 s (exact for any float of a microsecond count), kept in four
    # 32-bit limbs so SQL sums of them stay integers (see sync.client.exact_sum).
    "wait_l0",
    "wait_l1",
    "wait_l2",
    "wait_l3",
    "service_l0",
    "service_l1",
    "service_l2",
    "service_l3",
    "inexact",  # values that have no such exact form: their groups read every value
)

# KPI facts of the live state (core.kpi_rows.FactRow), rewritten per touched ticket.
kpi_facts = Table(
    "kpi_facts",
    metadata,
    Column("ticket_id", String, primary_key=True),
    Column("ord", Integer, primary_key=True),
    Column("kind", String, nullable=False),
    Column("service_id", String),
    Column("counter_id", String),
    Column("staff_id", String),
    Column("local_day", String, nullable=False),  # ISO date in the branch's zone
    Column("hour_start", Integer, nullable=False),  # Unix seconds of the local hour's start
    Column("value", Float),  # wait (segment) or service time (completion), seconds
    Column("no_show", Integer, nullable=False),
    # A day's sorted waits or service times, and a range's, read from the indexes; the
    # first also covers every column a report groups or filters the values by.
    Index(
        "ix_kpi_facts_kind_day_value",
        "kind",
        "local_day",
        "value",
        "service_id",
        "counter_id",
        "staff_id",
        "hour_start",
    ),
    Index("ix_kpi_facts_kind_value_day", "kind", "value", "local_day"),
)

# The counts of kpi_facts per branch-local hour, service, counter and staff member
# ('' for none), kept with the facts so report counts need not scan them.
kpi_hours = Table(
    "kpi_hours",
    metadata,
    Column("hour_start", Integer, primary_key=True),
    Column("service_id", String, primary_key=True),
    Column("counter_id", String, primary_key=True),
    Column("staff_id", String, primary_key=True),
    Column("local_day", String, nullable=False),
    *(Column(name, Integer, nullable=False) for name in HOUR_COUNTS),
)

# The same counts per hour for the whole branch: what reports without a service,
# counter or staff filter or grouping read (a year is a few thousand rows).
kpi_branch_hours = Table(
    "kpi_branch_hours",
    metadata,
    Column("hour_start", Integer, primary_key=True),
    Column("local_day", String, nullable=False),
    *(Column(name, Integer, nullable=False) for name in HOUR_COUNTS),
)

# The zone the KPI facts were bucketed in; another zone means rebuilding them.
kpi_meta = Table(
    "kpi_meta",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("time_zone", String, nullable=False),
    # The SLA targets kpi_hours counted with, as JSON; NULL when it was not built.
    Column("targets", String),
)

# Tickets whose KPI facts a bulk pull left to be written later (see kpi_store.defer).
kpi_dirty = Table(
    "kpi_dirty",
    metadata,
    Column("ticket_id", String, primary_key=True),
)

number_blocks = Table(
    "number_blocks",
    metadata,
    Column("prefix", String, primary_key=True),
    Column("business_day", String, primary_key=True),
    Column("first", Integer, primary_key=True),
    Column("last", Integer, nullable=False),
    Column("next", Integer, nullable=False),
    Column("service_id", String, nullable=False),
)

fallback_used = Table(
    "fallback_used",
    metadata,
    Column("prefix", String, primary_key=True),
    Column("business_day", String, primary_key=True),
    Column("number", Integer, primary_key=True),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String, nullable=False),  # rejected | number_warning
    Column("event_id", String),
    Column("ticket_number", String),
    Column("description", String, nullable=False),
    Column("reason", String, nullable=False),
    Column("created_at", String, nullable=False),
    Column("acknowledged_at", String),
)


def make_engine(path: Path) -> Engine:
    """An engine whose connections have the cache's pragmas and explicit transactions.

    The driver's own transaction handling is switched off (``isolation_level=None``)
    so that the ``begin`` hook decides: ``BEGIN IMMEDIATE`` for connections marked
    ``write=True``, a plain deferred ``BEGIN`` for readers.
    """
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on any error."""
    with engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """One deferred read transaction: a consistent snapshot of the file."""
    with engine.connect() as conn, conn.begin():
        yield conn


def driver(conn: Connection) -> sqlite3.Connection:
    """The driver's connection under ``conn``, inside the same transaction.

    For the statements every key press runs: ``sqlite3`` keeps them prepared, and
    a few microseconds each instead of the tenth of a millisecond SQLAlchemy adds
    decides whether a command and the console's read of it fit in one frame.
    """
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw
