"""Versioning of the cache file: refuse newer files, back up and upgrade older ones.

The schema version is SQLite's ``PRAGMA user_version`` (in the file header, so it is
readable without knowing any table, and written in the same transaction as the
upgrade). A new file is created from :data:`sync.client.store.metadata` at the
latest version; an older one runs the :data:`STEPS` above its version, in order, in
one ``BEGIN IMMEDIATE`` transaction (SQLite DDL is transactional: a crash mid-way
leaves the old version intact).

Why not Alembic, which the service uses: this is a single-user embedded file that a
console opens on every start, where Alembic would add its script directory to the
PyInstaller bundle and its environment to start-up, and offers nothing a dictionary
of steps does not (no branches, no autogenerate against a shared database). Two
things it would not do for us are done here: a copy of the file is taken with the
SQLite backup API before any upgrade (a bad step costs staff nothing), and a file
from a *newer* build is refused before anything is written to it, so switching back
after a downgrade loses no outbox.

To change the schema: edit the tables in :mod:`sync.client.store`, and add
``STEPS[n] = step`` that brings a version ``n - 1`` file to the same shape.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from sync.client.errors import NotACacheFile, SchemaTooNew
from sync.client.store import metadata, snapshot, write_transaction

Step = Callable[[Connection], None]


def _parked_by(conn: Connection) -> None:
    """2: ``tickets.parked_by``, the counter that parked a parked ticket, and an index
    on ``tickets(status, service_id)`` for the console's per-action reads.

    Filled from the latest ``ticket.parked`` event of each parked ticket (own
    unconfirmed events after the confirmed log), so the projection still matches
    the log on the first open after the upgrade and nothing needs rebuilding.
    """
    conn.execute(text("ALTER TABLE tickets ADD COLUMN parked_by VARCHAR"))
    conn.execute(
        text("CREATE INDEX IF NOT EXISTS ix_tickets_status_service ON tickets (status, service_id)")
    )
    conn.execute(
        text(
            """
            UPDATE tickets SET parked_by = (
                SELECT json_extract(log.body, '$.counter_id') FROM (
                    SELECT body, 0 AS own, server_seq AS seq FROM events
                    UNION ALL
                    SELECT body, 1 AS own, device_seq AS seq FROM outbox WHERE status != 'void'
                ) AS log
                WHERE json_extract(log.body, '$.type') = 'ticket.parked'
                  AND json_extract(log.body, '$.ticket_id') = tickets.id
                ORDER BY log.own DESC, log.seq DESC
                LIMIT 1
            )
            WHERE status = 'parked'
            """
        )
    )


def _snapshot(conn: Connection) -> None:
    """3: ``snapshot``, the confirmed state saved so an open need not replay the log.

    Created empty: the first open after the upgrade replays the log as before and
    saves one.
    """
    snapshot.create(conn, checkfirst=True)


def _kpi_facts(conn: Connection) -> None:
    """4: ``events.ticket_id`` (indexed: a ticket's confirmed history for its KPI facts)
    and the empty ``kpi_facts``, ``kpi_hours``, ``kpi_branch_hours``, ``kpi_meta`` and
    ``kpi_dirty`` tables.

    The facts are not computed here: with no ``kpi_meta`` row the cache's first write
    lists every ticket in ``kpi_dirty`` and the facts are written from there
    (:func:`sync.client.kpi_store.flush_facts`; it needs the branch's zone and the
    live outbox tail).
    """
    conn.execute(text("ALTER TABLE events ADD COLUMN ticket_id VARCHAR"))
    conn.execute(text("UPDATE events SET ticket_id = json_extract(body, '$.ticket_id')"))
    conn.execute(text("CREATE INDEX ix_events_ticket_id ON events (ticket_id)"))
    metadata.tables["kpi_facts"].create(conn)
    metadata.tables["kpi_hours"].create(conn)
    metadata.tables["kpi_branch_hours"].create(conn)
    metadata.tables["kpi_meta"].create(conn)
    metadata.tables["kpi_dirty"].create(conn)


STEPS: dict[int, Step] = {2: _parked_by, 3: _snapshot, 4: _kpi_facts}
"""Upgrade steps by the version they produce (2, 3, …); version 1 is the first schema."""


def latest_version() -> int:
    return max(STEPS, default=1)


def file_version(path: Path) -> int | None:
    """The schema version of an existing cache file, or None if there is none yet.

    Read through a read-only connection, so a file this build must refuse is not
    modified in any way (not even its journal mode).
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise NotACacheFile(f"{path} is not a QueueDesk cache file: {exc}") from exc
    finally:
        conn.close()
    if version == 0:
        if tables[0]:
            raise NotACacheFile(f"{path} is an SQLite file but not a QueueDesk cache")
        return None
    return version


def check_openable(path: Path) -> int | None:
    """The file's version after refusing one from a newer build (see :class:`SchemaTooNew`)."""
    version = file_version(path)
    if version is not None and version > latest_version():
        raise SchemaTooNew(
            f"{path} was written by a newer QueueDesk (cache schema {version}; this build "
            f"knows up to {latest_version()}). Update QueueDesk, or move the file away to "
            "start with an empty cache (its unsent changes would be lost)."
        )
    return version


def backup(path: Path, version: int) -> Path:
    """A consistent copy of ``path`` next to it, taken with the SQLite backup API."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.v{version}-{stamp}.bak")
    source = sqlite3.connect(path)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    return target


def migrate(engine: Engine, path: Path, version: int | None) -> Path | None:
    """Bring the file to :func:`latest_version`; returns the backup taken, if any.

    ``version`` is what :func:`check_openable` read (None for a new file).
    """
    latest = latest_version()
    if version == latest:
        return None
    copy = backup(path, version) if version is not None else None
    with write_transaction(engine) as conn:
        if version is None:
            metadata.create_all(conn)
        else:
            for target in range(version + 1, latest + 1):
                STEPS[target](conn)
        conn.exec_driver_sql(f"PRAGMA user_version={int(latest)}")
    return copy
