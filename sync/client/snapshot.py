"""The confirmed branch state saved in the cache file, so opening it need not replay the log.

Opening a cache used to fold the whole confirmed log (``events``) into memory: a
console with months of history waited seconds for its window. The ``snapshot``
row (:data:`sync.client.store.snapshot`) holds ``base`` (see
:mod:`sync.client.replica`) as of the last confirmed event it covers; an open
folds only the events after it.

A snapshot is trusted only if it is exactly what a replay would give:

- it is written in the same transaction as the events it covers, and names the
  last one (``server_seq``, event id) and how many rows the log then held, so a
  log that lost or changed rows (a file restored from a copy, edited by hand) no
  longer matches it;
- it names the reference data version it was folded with (folding reads service
  codes and which services and counters exist), and :func:`fingerprint` of the
  code that folds and encodes (a build whose fold or state differs ignores it);
- a CRC of the body catches a damaged page.

Anything that does not match means a replay, as before; the cache then compares
the projection with the result as always, and rewrites the snapshot.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import zlib
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select

from core import state_codec
from core.events import Customer
from core.state import BranchState
from core.state_codec import FORMAT, decode, encode
from sync.client.store import events, snapshot
from sync.protocol import BranchStateBody

log = logging.getLogger(__name__)

# Whose code decides what a folded state looks like: a change to any of them may
# change the state a replay gives, so a snapshot of another build is not used.
_FOLD_MODULES = (
    "core.events",
    "core.machine",
    "core.ordering",
    "core.rules",
    "core.state",
    "core.values",
    "core.state_codec",
    "sync.client.replica",
    __name__,
)


@functools.cache  # the code and shapes it hashes do not change while the process runs
def fingerprint() -> str | None:
    """What a snapshot must have been written by to be used; None: never use one.

    The source of the modules that fold and encode, and the shape of the state.
    None when core's state has fields this codec does not know, or when the
    source is not available (a frozen build without sources): replaying is slow
    but never wrong.
    """
    if not state_codec.knows_shapes():
        log.warning("core's state has changed shape: cache snapshots are not used")
        return None
    digest = hashlib.sha256(f"{FORMAT}:{sorted(Customer.model_fields)}".encode())
    for name in _FOLD_MODULES:
        loader = getattr(importlib.import_module(name).__spec__, "loader", None)
        try:
            source = loader.get_source(name) if loader is not None else None
        except (ImportError, OSError):
            source = None
        if source is None:
            return None
        digest.update(name.encode() + b"\0" + source.encode())
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Position:
    """How far into the confirmed log a snapshot reaches."""

    server_seq: int  # the last event it covers (0: none)
    event_id: str | None  # that event's id
    count: int  # rows of the log up to and including it


def log_position(conn: Connection) -> Position:
    """The position of the whole confirmed log as ``conn`` sees it."""
    count, last = conn.execute(select(func.count(), func.max(events.c.server_seq))).one()
    if not last:
        return Position(0, None, 0)
    event_id = conn.execute(select(events.c.event_id).where(events.c.server_seq == last)).scalar()
    return Position(int(last), event_id, int(count))


def _covers(conn: Connection, at: Position) -> bool:
    """Whether the log's rows up to ``at.server_seq`` are the ones the snapshot folded."""
    upto = select(func.count()).where(events.c.server_seq <= at.server_seq)
    if conn.execute(upto).scalar_one() != at.count:
        return False
    if at.server_seq == 0:
        return True
    query = select(events.c.event_id).where(events.c.server_seq == at.server_seq)
    return bool(conn.execute(query).scalar() == at.event_id)


@dataclass(frozen=True, slots=True)
class Loaded:
    state: BranchState
    position: Position
    skipped: int  # confirmed events that did not fold (see Replica.confirm)


def load(conn: Connection, branch_id: str, reference_version: str | None) -> Loaded | None:
    """The stored snapshot if it is usable as it stands, else None (replay instead)."""
    expected = fingerprint()
    if expected is None:
        return None
    row = conn.execute(select(snapshot)).first()
    if row is None:
        return None
    position = Position(row.server_seq, row.event_id, row.events)
    problem = None
    if row.format != FORMAT or row.fingerprint != expected:
        problem = "written by another build"
    elif row.reference_version != reference_version:
        problem = "folded with other reference data"
    elif zlib.crc32(row.body.encode()) != row.crc:
        problem = "damaged"
    elif not _covers(conn, position):
        problem = "not matching the log"
    if problem is None:
        try:
            state = decode(row.body)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            problem = f"unreadable ({exc})"
        else:
            if state.branch_id == branch_id:
                return Loaded(state, position, row.skipped)
            problem = "of another branch"
    log.info("cache snapshot not used: %s; replaying the log", problem)
    return None


def save(
    conn: Connection,
    state: BranchState,
    skipped: int,
    reference_version: str | None,
) -> Position | None:
    """Store ``state`` as the fold of the whole log ``conn`` holds; returns its position.

    The caller guarantees that ``state`` is exactly that fold (and that no events
    are written after it in this transaction). Returns None, storing nothing, when
    this build does not use snapshots.
    """
    conn.execute(delete(snapshot))
    if fingerprint() is None:
        return None
    at = log_position(conn)
    _store(conn, encode(state), at, skipped, reference_version)
    return at


def adopt(conn: Connection, state: BranchStateBody, reference_version: str | None) -> None:
    """Store the service's fold of the log up to ``state.server_seq`` as the snapshot.

    Like :func:`save`, but the state was folded (and encoded, in this codec's
    format) by the service. Its position comes from the service; :func:`load`
    uses it only if the stored log matches it, as for any snapshot.
    """
    conn.execute(delete(snapshot))
    if fingerprint() is None or state.format != FORMAT:
        return
    at = Position(state.server_seq, str(state.event_id), state.events)
    _store(conn, state.body, at, 0, reference_version)


def _store(
    conn: Connection, body: str, at: Position, skipped: int, reference_version: str | None
) -> None:
    conn.execute(
        insert(snapshot).values(
            id=1,
            format=FORMAT,
            fingerprint=fingerprint(),
            reference_version=reference_version,
            server_seq=at.server_seq,
            event_id=at.event_id,
            events=at.count,
            skipped=skipped,
            crc=zlib.crc32(body.encode()),
            body=body,
        )
    )


def discard(conn: Connection) -> None:
    conn.execute(delete(snapshot))
