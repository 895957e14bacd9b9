"""The console's local cache: commands offline, and the sync engine's side of the file.

:class:`LocalCache` is the one object through which the console and the sync
engine touch a branch's cache file (:mod:`sync.client.store`). Share one instance
between the UI and the sync thread: it is thread-safe (one lock; every operation
is one SQLite transaction, see :mod:`sync.client.base`), and its in-memory state
(:mod:`sync.client.replica`) is what keeps a command at a few milliseconds.

- :meth:`LocalCache.execute` decides a command against the live state, stamps
  ``device_id``/``device_seq``, and writes the events to the outbox and the
  projection in one transaction, then wakes the sync engine. A
  :class:`~core.errors.DomainError` writes nothing. Tickets are numbered by the
  cache (:mod:`sync.client.numbers`).
- The engine pushes :meth:`~LocalCache.pending`, hands the verdicts to
  :meth:`~LocalCache.apply_push_results` and pulled pages to
  :meth:`~LocalCache.apply_pull` (:mod:`sync.client.rebase`). Both return the
  :class:`~sync.client.views.Rejection` values to alert staff about; they are also
  kept for :meth:`~LocalCache.alerts` until acknowledged.
- The console reads the projection (:class:`sync.client.reads.ConsoleReads`);
  :meth:`LocalCache.waiting_changes` lets it re-read only the tickets that
  changed since its last look, so an action costs the same with 10 or 10,000
  tickets waiting.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from core import state_codec
from core.commands import Command, IssueTicket
from core.events import Customer, EventBase, TicketIssued
from core.kpi import GroupBy, KpiReport
from core.kpi_rows import Counts, Filters, GroupKey
from core.machine import apply, decide
from core.values import BusinessDay, Channel, PriorityClass, TicketNumber
from sync.client import kpi_store, projection, reads, reports, snapshot
from sync.client import outbox as rows
from sync.client.base import Adoption, CacheFile
from sync.client.errors import NotACacheFile
from sync.client.reads import ConsoleReads
from sync.client.rebase import PullOutcome, apply_pull, apply_push_results
from sync.client.replica import OutboxEntry, ticket_of
from sync.client.store import (
    device,
    driver,
    outbox,
    reference,
    sync_state,
)
from sync.client.views import AppliedPull, Rejection, WaitingChanges
from sync.protocol import (
    MAX_PUSH_EVENTS,
    BranchStateBody,
    EventResult,
    LeaseBlock,
    PullResponse,
    ReferenceData,
)

log = logging.getLogger(__name__)

UNSENT = reads.UNSENT  # outbox rows still to push
_NEXT_SEQ = "UPDATE device SET next_device_seq = ?"
BULK_PAGE = 200  # pulled events in a page from which live and base share while no own event applies


class LocalCache(CacheFile, ConsoleReads):
    """The console's cache of one branch: see the module docstring. Open with :meth:`open`."""

    # -- local commands ----------------------------------------------------------

    def set_wake(self, wake: Callable[[], None] | None) -> None:
        """Called (from the committing thread) after each local command commits."""
        self._wake = wake

    def execute(self, command: Command) -> list[EventBase]:
        """Decide ``command`` locally and queue its events; returns them, stamped.

        An :class:`~core.commands.IssueTicket` gets its number from the cache
        (leased, then fallback numbers; see :mod:`sync.client.numbers`): the
        ``number`` it carries is replaced. Domain and validation errors propagate
        with the core's message and nothing is written.
        """
        with self._writing() as conn:
            live = self._replica.detach()
            warning: str | None = None
            saved = self._numbers.snapshot()
            try:
                if isinstance(command, IssueTicket):
                    command, warning = self._number(conn, command)
                events = decide(live, command)
            except BaseException:
                self._numbers.restore(saved)  # the transaction forgets the number too
                raise
            seqs = range(self._next_seq, self._next_seq + len(events))
            stamped = [
                e.model_copy(update={"device_id": self._device_id, "device_seq": s})
                for e, s in zip(events, seqs, strict=True)
            ]
            entries = [OutboxEntry(e.device_seq or 0, e, "pending") for e in stamped]
            self._dirty = True
            for event in stamped:
                apply(live, event)
            self._replica.tail.extend(entries)
            self._next_seq += len(events)
            rows.add_entries(conn, entries)
            driver(conn).execute(_NEXT_SEQ, (self._next_seq,))
            touched = {t for e in stamped if (t := ticket_of(e))}
            self._project(conn, touched, touched, facts_now=False)
            if warning is not None:
                issued = stamped[0]
                assert isinstance(issued, TicketIssued)
                rows.record_alert(
                    conn,
                    "number_warning",
                    f"Issued {issued.number}",
                    warning,
                    event_id=str(issued.id),
                    number=issued.number,
                )
        self._notify()
        return stamped

    def issue_ticket(
        self,
        service_id: str,
        *,
        at: datetime,
        actor_id: str | None = None,
        channel: Channel = Channel.WALK_IN,
        priority: PriorityClass = PriorityClass.NORMAL,
        customer: Customer | None = None,
        appointment_at: datetime | None = None,
    ) -> TicketIssued:
        """Issue a ticket numbered by the cache; returns the ``ticket.issued`` event."""
        placeholder = TicketNumber("A", 1)  # replaced by execute
        command = IssueTicket(
            at=at,
            actor_id=actor_id,
            service_id=service_id,
            number=placeholder,
            channel=channel,
            priority=priority,
            customer=customer,
            appointment_at=appointment_at,
        )
        issued = self.execute(command)[0]
        assert isinstance(issued, TicketIssued)
        return issued

    def _number(self, conn: Connection, command: IssueTicket) -> tuple[IssueTicket, str | None]:
        live = self._replica.live
        code = live.service(command.service_id).code
        day = BusinessDay.of(command.at, live.time_zone, live.day_starts_at_min).day
        got = self._numbers.allocate(conn, code, day, lambda n: (day, n) in live.numbers)
        numbered = dataclasses.replace(command, number=got.number)
        warning = None
        if got.source == "unslotted":
            warning = (
                f"{got.number} was issued offline without a reserved number; "
                "another console may have issued the same number today"
            )
        return numbered, warning

    def _notify(self) -> None:
        if self._wake is not None:
            try:
                self._wake()
            except Exception:
                log.exception("the sync wake-up callback failed")

    # -- the console's incremental reads -----------------------------------------

    def waiting_changes(self, since: int | None = None) -> WaitingChanges:
        """The queues' changes after change number ``since`` (None: everything).

        Everything is returned when the cache cannot say what changed: the first
        look, a reader more than a few hundred writes behind, a reload, or a file
        written by another instance.
        """
        with self._reading() as conn:
            ids = self._changed_since(since) if self._current(conn) else None
            if ids is None:
                change = self._change
                return WaitingChanges(change, reads.waiting_grouped(conn), [], frozenset())
            found = reads.tickets_by_id(conn, ids)
            gone = ids - {t.id for t in found}
            return WaitingChanges(self._change, None, found, frozenset(gone))

    # -- the sync engine's side --------------------------------------------------

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def slot(self) -> int | None:
        return self._numbers.slot

    def pending(self, limit: int = MAX_PUSH_EVENTS) -> list[dict[str, Any]]:
        """Unsent outbox events in ``device_seq`` order, as JSON objects, for a push."""
        with self._reading() as conn:
            query = (
                select(outbox.c.body)
                .where(outbox.c.status.in_(UNSENT))
                .order_by(outbox.c.device_seq)
                .limit(limit)
            )
            return [json.loads(body) for (body,) in conn.execute(query)]

    def apply_push_results(self, results: Sequence[EventResult]) -> list[Rejection]:
        with self._writing() as conn:
            self._dirty = True
            outcome = apply_push_results(conn, self._replica, results)
            self._settle(conn, outcome)
        return outcome.rejections

    def wants_state(self) -> bool:
        """Whether the next pull should ask for the branch's state (a new, empty cache).

        See :meth:`apply_pull`: a device that holds nothing yet starts from the
        service's fold of the log instead of folding every event itself.
        """
        with self._reading() as conn:
            if conn.execute(select(sync_state.c.cursor)).scalar_one() != 0:
                return False
        with self._lock:
            return not self._replica.tail and snapshot.fingerprint() is not None

    def apply_pull(self, page: PullResponse) -> AppliedPull:
        """Store a pulled page, rebase pending events on it, update the projection.

        A page of :data:`BULK_PAGE` events or more with more to come (a first
        sync, a long outage) folds each event once (see :meth:`Replica.absorb`);
        the last page of a pull separates ``live`` again and, every
        :data:`~sync.client.base.SNAPSHOT_EVERY` events, saves a snapshot.

        A page that carries the branch's state (a new device's first pull, see
        :class:`~sync.protocol.BranchStateBody`) starts an *adoption*: while the
        cache holds no own events, the pages are stored without being folded, and
        once the log reaches the state's ``server_seq`` the state is saved as the
        cache's snapshot and loaded like one (which checks that the stored log is the
        one it covers, and else replays the log). Until then the console's view of
        the queue stays as it was (empty, for a new device). A reload, a reference
        data change that needs a replay, an own event or a malformed one gives the
        adoption up: what was stored is folded.
        """
        with self._writing() as conn:
            self._dirty = True
            cursor = conn.execute(select(sync_state.c.cursor)).scalar_one()
            changed, reload = False, False
            if page.reference is not None:
                changed, reload = self._use_reference(conn, page.reference)
            if page.state is not None:
                self._adopt(page.state)
            if self._adopting is not None and (reload or self._replica.tail):
                self._load(conn)  # folds what was stored; see _load
                reload = False
            outcome = None
            if self._adopting is not None:
                outcome = self._store_unfolded(conn, page, cursor)
            if outcome is None:
                share = page.has_more and len(page.events) >= BULK_PAGE
                outcome = apply_pull(conn, self._replica, page, cursor, share)
            conn.execute(update(sync_state).values(cursor=max(cursor, page.cursor)))
            if reload:
                outcome.rejections += self._load(conn).rejections
                projection.rewrite(conn, self._replica.live, self._replica.unsynced_tickets())
            self._settle(conn, outcome)
            if not page.has_more and self._adopting is None:
                self._replica.detach()  # so that the next command does not pay for it
                self._save_snapshot(conn)
        return AppliedPull(
            stored=outcome.stored,
            cursor=max(cursor, page.cursor),
            has_more=page.has_more,
            confirmed_own=outcome.confirmed_own,
            rebased=outcome.rebased,
            reference_changed=changed,
            rejections=outcome.rejections,
        )

    def _adopt(self, state: BranchStateBody) -> None:
        """Adopt the service's ``state`` if this cache can use it.

        Events folded before it came (a page that carried it late) stay folded until
        the state, loaded over the stored log, replaces them.
        """
        if self._replica.tail:
            return  # own events: they are rebased on the log as it is folded
        if state.format != state_codec.FORMAT or snapshot.fingerprint() is None:
            log.info("branch state of format %s not used; folding the log", state.format)
            return
        reference = self._replica.reference
        self._adopting = Adoption(state, reference.version if reference else None)
        self._replica.replayable = False  # base lags the log until the state is loaded

    def _store_unfolded(
        self, conn: Connection, page: PullResponse, cursor: int
    ) -> PullOutcome | None:
        """Store the page's new events unfolded; load the adopted state once they reach it.

        None when an event does not look like one of the log: the adoption is given
        up (what was stored is folded) and the page is to be folded as usual.
        """
        fresh = [p for p in page.events if p.server_seq > cursor]
        try:
            stored = [(p.server_seq, *rows.unfolded_ids(p.event)) for p in fresh]
        except ValueError as exc:
            log.warning("pulled events not stored unfolded (%s); folding the log", exc)
            self._load(conn)
            return None
        rows.store_confirmed(
            conn,
            (
                (seq, event_id, rows.dumps_pulled(p.event), ticket)
                for (seq, event_id, ticket), p in zip(stored, fresh, strict=True)
            ),
        )
        outcome = PullOutcome(stored=len(fresh))
        adopting = self._adopting
        assert adopting is not None
        state = adopting.state
        if max(cursor, page.cursor) >= state.server_seq:
            snapshot.adopt(conn, state, adopting.reference_version)
            self._adopting = None
            outcome.rejections += self._load(conn).rejections
            self._project_all(conn)
            log.info(
                "cache %s: started from the service's state at %s (%s)",
                self.path,
                state.server_seq,
                "used" if self.snapshot_used else "not matching the log: replayed",
            )
        return outcome

    def realign(self, expected: int) -> int:
        """Renumber the unsent events from ``expected`` on; returns how many moved.

        For a push the service refused with a ``device_seq`` gap (409): this file and
        the service disagree on the device's next seq (a file restored from an older
        copy, a service restored from a backup). The service has not stored an unsent
        event under any seq it would refuse it for, and recognises the ones it holds
        by id whatever their seq, so moving them loses nothing; new commands continue
        after them.
        """
        with self._writing() as conn:
            self._dirty = True
            tail = self._replica.tail
            sent = [e.device_seq for e in tail if e.status == "accepted"]
            unsent = sorted((e for e in tail if e.status != "accepted"), key=lambda e: e.device_seq)
            start = max([expected, *(s + 1 for s in sent)])
            moves = list(zip(unsent, range(start, start + len(unsent)), strict=True))
            if unsent and start > unsent[0].device_seq:
                moves.reverse()  # move the last first: device_seq is the row's key
            moved = 0
            for entry, seq in moves:
                if entry.device_seq == seq:
                    continue
                event = entry.event.model_copy(update={"device_seq": seq})
                conn.execute(
                    update(outbox)
                    .where(outbox.c.device_seq == entry.device_seq)
                    .values(device_seq=seq, body=rows.to_json(event))
                )
                entry.device_seq, entry.event = seq, event
                moved += 1
            tail.sort(key=lambda e: e.device_seq)
            self._next_seq = max(self._next_seq, start + len(unsent))
            conn.execute(update(device).values(next_device_seq=self._next_seq))
        return moved

    def apply_reference(self, data: ReferenceData) -> bool:
        """Use reference data fetched outside a pull; True if it was new."""
        with self._writing() as conn:
            self._dirty = True
            changed, reload = self._use_reference(conn, data)
            if reload:
                outcome = self._load(conn)
                projection.rewrite(conn, self._replica.live, self._replica.unsynced_tickets())
                self._settle(conn, outcome)
            else:
                self._project(conn, set(), set())
        return changed

    def _use_reference(self, conn: Connection, data: ReferenceData) -> tuple[bool, bool]:
        if data.branch.id != self.branch_id:
            raise NotACacheFile(f"reference data of branch {data.branch.id} for {self.branch_id}")
        current = self._replica.reference
        if current is not None and current.version == data.version:
            return False, False
        conn.execute(reference.delete())
        conn.execute(
            insert(reference).values(id=1, version=data.version, body=data.model_dump_json())
        )
        projection.write_services(conn, data)
        if data.device_slot is not None and data.device_slot != self._numbers.slot:
            self._numbers.slot = data.device_slot
            conn.execute(update(device).values(slot=data.device_slot))
        return True, self._replica.set_reference(data)

    def flush_facts(self, limit: int | None = None) -> int:
        """Write the KPI facts a bulk pull left for later (at most ``limit`` tickets' worth).

        Returns how many tickets are still waiting for theirs; the sync engine calls
        this a chunk at a time while idle, and every report first finishes the job.
        """
        with self._reading() as conn:
            if not kpi_store.has_deferred(conn):
                return 0
        with self._writing(bump=False) as conn:
            return kpi_store.flush_facts(
                conn, self._zone(), self._replica.tail, self._targets(), limit
            )

    def report(
        self, *, key: GroupBy | None = None, filters: Filters | None = None
    ) -> dict[GroupKey, KpiReport]:
        """Branch KPIs of the live state from SQL (see :mod:`sync.client.reports`)."""
        self.flush_facts()
        with self._reading() as conn:
            live = self._replica.live
            return reports.branch_report(
                conn,
                targets={s.id: s.target_wait_s for s in live.services.values()},
                time_zone=str(live.time_zone),
                counter_events=kpi_store.counter_events(conn, self._replica.tail),
                key=key,
                filters=filters,
            )

    def report_counts(
        self, *, key: GroupBy, filters: Filters | None = None
    ) -> dict[GroupKey, Counts]:
        """Only the counts per ``key`` (see :func:`sync.client.reports.counts_by`)."""
        self.flush_facts()
        with self._reading() as conn:
            live = self._replica.live
            return reports.counts_by(
                conn,
                targets={s.id: s.target_wait_s for s in live.services.values()},
                time_zone=str(live.time_zone),
                key=key,
                filters=filters,
            )

    def wait_histogram(self, *, bin_s: int, bins: int, filters: Filters | None = None) -> list[int]:
        """Called segments per wait bin (see :func:`sync.client.reports.wait_histogram`)."""
        self.flush_facts()
        with self._reading() as conn:
            return reports.wait_histogram(conn, filters=filters, bin_s=bin_s, bins=bins)

    def local_day(self, at: datetime) -> date:
        """The branch-local calendar day of ``at`` (the day reports bucket it in)."""
        with self._lock:
            return at.astimezone(self._replica.live.time_zone.zone).date()

    def reference(self) -> ReferenceData | None:
        """The branch's reference data (services, counters, staff, pause reasons), if any.

        A frozen model that the cache replaces whole when new data arrives and never
        changes in place, so the caller may keep it.
        """
        with self._lock:
            return self._replica.reference

    def cursor(self) -> int:
        with self._reading() as conn:
            return int(conn.execute(select(sync_state.c.cursor)).scalar_one())

    def reference_version(self) -> str | None:
        with self._reading() as conn:
            return conn.execute(select(reference.c.version)).scalar_one_or_none()

    def outbox_size(self) -> int:
        with self._reading() as conn:
            return reads.outbox_size(conn)

    def add_leases(self, blocks: Sequence[LeaseBlock], slot: int | None = None) -> None:
        """Keep leased number blocks (and the device's fallback slot, when given)."""
        with self._writing(bump=False) as conn:
            self._dirty = True
            self._numbers.add(conn, list(blocks))
            if slot is not None and slot != self._numbers.slot:
                self._numbers.slot = slot
                conn.execute(update(device).values(slot=slot))

    def lease_needs(self, at: datetime | None = None) -> dict[str, int]:
        """Unused leased numbers per active service id for the business day of ``at`` (now)."""
        with self._writing(bump=False):  # catches up with other writers first
            ref = self._replica.reference
            if ref is None:
                return {}
            day = self._today(at)
            return {
                s.id: self._numbers.pool.remaining(s.code, day) for s in ref.services if s.active
            }

    def projection_hash(self) -> str:
        with self._reading() as conn:
            return projection.projection_hash(conn)

    def mark_synced(self, at: datetime) -> None:
        with self._writing(bump=False) as conn:
            conn.execute(update(sync_state).values(last_synced_at=at.astimezone(UTC).isoformat()))

    def acknowledge_alerts(self, ids: Iterable[int]) -> None:
        with self._writing(bump=False) as conn:
            reads.acknowledge(conn, ids)
