"""Opening a cache file and the transaction discipline every cache operation follows.

:class:`CacheFile` is the base of :class:`sync.client.cache.LocalCache`: it owns the
engine, the lock and the memory (:class:`~sync.client.replica.Replica`, the number
source, the device identity), and guarantees that the memory is only ever a
function of the file:

- every operation runs under one lock in one transaction (:meth:`CacheFile._writing`);
- every write bumps a generation counter; an instance that finds the file at
  another generation than its own (another instance or process wrote it) reloads
  before doing anything, and so does one whose transaction failed after its memory
  had moved on;
- memory is rebuilt from the file's snapshot of the confirmed state plus the
  confirmed events after it (:mod:`sync.client.snapshot`), or by replaying the
  whole log when the snapshot is missing or does not match (one exception: while
  a new cache adopts the service's state, ``base`` lags the events stored for it;
  a reload then gives the adoption up, folds them and rewrites the projection;
  see :meth:`sync.client.cache.LocalCache.apply_pull`); a snapshot is saved
  in the same transaction as the events it covers, when a pull reaches the head
  of the log or the cache closes, once :data:`SNAPSHOT_EVERY` events (and at
  least as many as there are tickets; on close, any) have arrived since the last;
- on open (or soon after, see :meth:`CacheFile.verify`), the projection is
  compared with the state rebuilt from the confirmed log and the outbox and
  rewritten if they differ (:attr:`CacheFile.repaired`);
  since every operation is one transaction this only happens to a file edited
  behind the cache's back (a state from a snapshot that disagrees with the
  projection is dropped for a replay first);
- every write of ticket rows is noted in a short in-memory change log
  (:meth:`CacheFile._note`), so the console can re-read only the tickets that
  changed instead of whole queues (:meth:`sync.client.cache.LocalCache.waiting_changes`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Self

from sqlalchemy import Connection, Engine, func, insert, select, text, update

from core.ids import new_id
from core.values import BusinessDay
from sync.client import kpi_store, migrations, projection, snapshot
from sync.client import outbox as rows
from sync.client.errors import NotACacheFile
from sync.client.numbers import NumberSource
from sync.client.rebase import Outcome, rebuild
from sync.client.replica import Replica
from sync.client.store import (
    device,
    driver,
    make_engine,
    outbox,
    read_transaction,
    reference,
    sync_state,
    write_transaction,
)
from sync.protocol import BranchStateBody, ReferenceData

log = logging.getLogger(__name__)

CHANGE_LOG_SIZE = 256  # writes remembered; a reader further behind reads everything again
# Confirmed events folded since the last snapshot before another is saved: replaying
# that many on the next open costs about what writing the snapshot costs.
SNAPSHOT_EVERY = 1000
_GENERATION = "SELECT generation FROM sync_state"
_BUMP = "UPDATE sync_state SET generation = ?"


@dataclass(frozen=True, slots=True)
class Adoption:
    """The service's branch state a new cache is storing the log up to (see
    :meth:`sync.client.cache.LocalCache.apply_pull`), with the version of the
    reference data held when it arrived (the one it was folded with)."""

    state: BranchStateBody
    reference_version: str | None


class CacheFile:
    """One branch's cache file, open. Create with :meth:`open`; :meth:`close` when done."""

    def __init__(self, engine: Engine, path: Path, branch_id: str) -> None:
        self._engine, self.path, self.branch_id = engine, path, branch_id
        self._lock = threading.RLock()
        self._wake: Callable[[], None] | None = None
        self._replica = Replica(branch_id, None)
        self._numbers = NumberSource()
        self._device_id = ""
        self._next_seq = 1
        self._generation = -1
        self._dirty = False  # memory moved ahead of the transaction in progress
        self._counters_written: dict[str, dict[str, Any]] | None = None
        self._snapshot_at = 0  # replica.folded when the snapshot was last loaded or saved
        # A service state being adopted: while set, ``base`` lags the stored log (the
        # events up to the state are stored unfolded). Memory only: a reload folds
        # what was stored instead (see _load).
        self._adopting: Adoption | None = None
        self.snapshot_used = False  # the last load started from the file's snapshot
        self._closed = False
        self.backup_path: Path | None = None  # copy taken before a schema upgrade
        self.repaired = False  # the projection disagreed with the log on open
        self.verified = False  # the projection was compared with the log (see verify)
        # The change log: ticket ids whose rows each write touched, by change number.
        # A reader that last looked at change ``n < self._horizon`` must read everything.
        self._change = 0
        self._horizon = 0
        self._changes: deque[tuple[int, frozenset[str]]] = deque(maxlen=CHANGE_LOG_SIZE)

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        branch_id: str,
        *,
        wake: Callable[[], None] | None = None,
        device_id: str | None = None,
        verify: bool = True,
    ) -> Self:
        """Open (creating, or upgrading after a backup) the cache file of ``branch_id``.

        ``device_id`` is used only when the file is new (default: a fresh UUIDv7).
        ``verify=False`` leaves the comparison of the projection with the log to a
        later :meth:`verify` (the console runs it on its sync thread, so that its
        window need not wait for a read of every ticket).
        Raises :class:`~sync.client.errors.SchemaTooNew` for a file of a newer build
        (left untouched) and :class:`~sync.client.errors.NotACacheFile` for a file
        that is not a cache or belongs to another branch.
        """
        version = migrations.check_openable(path)
        engine = make_engine(path)
        try:
            cache = cls(engine, path, branch_id)
            cache.backup_path = migrations.migrate(engine, path, version)
            cache._wake = wake
            cache._start(device_id or new_id(), verify)
        except BaseException:
            engine.dispose()
            raise
        return cache

    def _start(self, new_device_id: str, verify: bool = True) -> None:
        with self._writing() as conn:
            state = conn.execute(select(sync_state)).first()
            if state is not None and state.branch_id != self.branch_id:
                raise NotACacheFile(
                    f"{self.path} holds branch {state.branch_id}, not {self.branch_id}"
                )
            if state is None:
                values = {"id": 1, "branch_id": self.branch_id, "cursor": 0, "generation": 0}
                conn.execute(insert(sync_state).values(values))
                conn.execute(
                    insert(device).values(id=1, device_id=new_device_id, next_device_seq=1)
                )
                self._load(conn)
            last = conn.execute(select(func.max(outbox.c.device_seq))).scalar_one_or_none() or 0
            if self._next_seq <= last:  # cannot happen with atomic commits; never reuse a seq
                self._next_seq = last + 1
                conn.execute(update(device).values(next_device_seq=self._next_seq))
            if verify:
                rewritten = self._check_projection(conn)
            else:
                kpi_store.write_facts(conn, self._zone(), self._replica.tail, (), self._targets())
        if verify:
            self.verified, self.repaired = True, rewritten

    def verify(self) -> bool:
        """Compare the projection with the log if :meth:`open` did not; True if rewritten.

        Until then the console reads the projection as the file holds it, which is
        what the log says unless the file was edited by hand or by an older build.
        A rewrite marks every ticket changed, so readers read everything again.
        """
        with self._lock:
            if self.verified:
                return False
            with self._writing() as conn:
                rewritten = self._check_projection(conn)
            self.verified, self.repaired = True, rewritten
            return rewritten

    def _check_projection(self, conn: Connection) -> bool:
        """Rewrite the projection (and the KPI facts) if it differs from the log."""
        live, unsynced = self._replica.live, self._replica.unsynced_tickets()
        matches = projection.matches(conn, live, unsynced)
        if not matches and self.snapshot_used:
            # The projection was written with the log; a snapshot that disagrees
            # with it is not trusted over a replay.
            log.warning("cache %s: snapshot disagrees with the projection", self.path)
            snapshot.discard(conn)
            self._load(conn, use_snapshot=False)
            live, unsynced = self._replica.live, self._replica.unsynced_tickets()
            matches = projection.matches(conn, live, unsynced)
        if not matches:
            log.warning("cache %s: projection rebuilt from the log", self.path)
            self._note_all()
            projection.rewrite(conn, live, unsynced)
            if self._replica.reference is not None:
                projection.write_services(conn, self._replica.reference)
            kpi_store.rebuild_facts(conn, self._zone(), self._replica.tail, self._targets())
        else:
            kpi_store.write_facts(conn, self._zone(), self._replica.tail, (), self._targets())
        return not matches

    def _load(self, conn: Connection, use_snapshot: bool = True) -> Outcome:
        """Rebuild every piece of memory from the file, within ``conn``'s transaction.

        An adoption under way is given up: the events it stored unfolded are folded
        here, and the projection, which did not show them, is rewritten.
        """
        abandoned, self._adopting = self._adopting is not None, None
        ident = conn.execute(select(device)).first()
        self._device_id = ident.device_id if ident else ""
        self._next_seq = ident.next_device_seq if ident else 1
        ref_row = conn.execute(select(reference.c.version, reference.c.body)).first()
        ref = ReferenceData.model_validate_json(ref_row.body) if ref_row else None
        self._dirty = True
        self._counters_written = None
        self._note_all()  # reloaded: the file may have changed in any way
        saved = None
        if use_snapshot:
            saved = snapshot.load(conn, self.branch_id, ref_row.version if ref_row else None)
        self.snapshot_used = saved is not None
        if saved is None:
            self._replica = Replica(self.branch_id, ref)
            after = 0
        else:
            self._replica = Replica(self.branch_id, ref, saved.state)
            self._replica.skipped = saved.skipped
            after = saved.position.server_seq
        self._replica.load(rows.load_confirmed(conn, after), rows.load_tail(conn))
        self._snapshot_at = 0
        self._save_snapshot(conn)
        outcome = Outcome()
        rebuild(conn, self._replica, outcome, self._replica.live)
        rows.record_rejections(conn, outcome.rejections)
        self._numbers = NumberSource.load(conn, ident.slot if ident else None)
        self._generation = conn.execute(select(sync_state.c.generation)).scalar_one_or_none() or 0
        if abandoned:
            self._project_all(conn)
        return outcome

    def _project_all(self, conn: Connection) -> None:
        """Rewrite the whole projection from memory; list every ticket for its KPI facts."""
        live = self._replica.live
        projection.rewrite(conn, live, self._replica.unsynced_tickets())
        kpi_store.list_for_later(conn, live.tickets)
        self._note_all()

    def _save_snapshot(self, conn: Connection, at_least: int | None = None) -> None:
        """Save ``base`` as the snapshot if ``at_least`` events were folded since the last
        one (default: :data:`SNAPSHOT_EVERY`, or the number of tickets if more).

        Only in a write transaction whose memory is caught up with the file and after
        its last confirmed event is stored: the snapshot claims the whole log.
        """
        replica = self._replica
        # Writing costs about what replaying as many events as there are tickets does.
        wanted = max(SNAPSHOT_EVERY, len(replica.base.tickets)) if at_least is None else at_least
        if not replica.replayable or replica.folded - self._snapshot_at < max(wanted, 1):
            return
        version = replica.reference.version if replica.reference is not None else None
        snapshot.save(conn, replica.base, replica.skipped, version)
        self._snapshot_at = replica.folded

    def close(self) -> None:
        """Save a snapshot if confirmed events arrived since the last one, and close."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                with self._writing(bump=False) as conn:
                    self._save_snapshot(conn, at_least=1)
            except Exception as exc:  # a file that cannot be written still closes
                log.warning("cache %s: no snapshot saved on close: %s", self.path, exc)
            self._engine.dispose()

    # -- transactions ------------------------------------------------------------

    @contextmanager
    def _writing(self, bump: bool = True) -> Iterator[Connection]:
        """One write transaction with memory caught up first and restored on failure."""
        with self._lock:
            adopting = self._adopting
            try:
                with write_transaction(self._engine) as conn:
                    if not self._current(conn):
                        self._load(conn)
                    yield conn
                    if bump:
                        self._generation += 1
                        driver(conn).execute(_BUMP, (self._generation,))
            except BaseException:
                if self._dirty:
                    self._generation = -1  # the next operation reloads from the file
                    # The file may hold events stored unfolded that its projection does
                    # not show: the reload gives the adoption up and rewrites it.
                    self._adopting = adopting
                raise
            finally:
                self._dirty = False

    def _current(self, conn: Connection) -> bool:
        """Whether the file is at this instance's generation (no one else wrote it)."""
        row = driver(conn).execute(_GENERATION).fetchone()
        return row is not None and row[0] == self._generation

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._lock, read_transaction(self._engine) as conn:
            yield conn

    def _settle(self, conn: Connection, outcome: Outcome) -> None:
        """Keep the alerts and write the projection rows ``outcome`` touched."""
        rows.record_rejections(conn, outcome.rejections)
        self._project(conn, outcome.touched, self._replica.unsynced_tickets())

    def _project(
        self, conn: Connection, touched: set[str], unsynced: set[str], *, facts_now: bool = True
    ) -> None:
        """Write the projection rows of ``touched`` and keep their KPI facts.

        With ``facts_now`` False the tickets are only listed for
        :meth:`~sync.client.cache.LocalCache.flush_facts` (one statement, in this
        transaction): what a local command does, so that the key press does not wait
        for report upkeep. The sync engine writes them while idle, and every report
        first.
        """
        live = self._replica.live
        projection.write_tickets(conn, live, touched, unsynced)
        self._counters_written = projection.write_counters(conn, live, self._counters_written)
        if facts_now:
            kpi_store.keep_facts(conn, self._zone(), self._replica.tail, touched, self._targets())
        elif touched:
            kpi_store.list_for_later(conn, touched)
        self._note(touched)

    def _zone(self) -> str:
        return str(self._replica.live.time_zone)

    def _targets(self) -> dict[str, int | None]:
        return {s.id: s.target_wait_s for s in self._replica.live.services.values()}

    def _note(self, ticket_ids: Iterable[str]) -> None:
        """Log that the rows of ``ticket_ids`` were (re)written.

        Noted even if the transaction then rolls back: a reader re-reading rows that
        did not change loses nothing, and a failed write reloads everything anyway.
        """
        ids = frozenset(ticket_ids)
        if not ids:
            return
        self._change += 1
        if len(self._changes) == self._changes.maxlen:
            self._horizon = self._changes[0][0]
        self._changes.append((self._change, ids))

    def _note_all(self) -> None:
        self._change += 1
        self._horizon = self._change
        self._changes.clear()

    def _changed_since(self, change: int | None) -> frozenset[str] | None:
        """Ids of tickets written after change ``change``; None when unknown (read all)."""
        if change is None or change < self._horizon or change > self._change:
            return None
        return frozenset().union(*(ids for n, ids in self._changes if n > change))

    def _today(self, at: datetime | None) -> date:
        live = self._replica.live
        moment = at or datetime.now(UTC)
        return BusinessDay.of(moment, live.time_zone, live.day_starts_at_min).day

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` verdict: ``"ok"`` for a sound file."""
        with self._reading() as conn:
            return str(conn.execute(text("PRAGMA integrity_check")).scalar_one())
