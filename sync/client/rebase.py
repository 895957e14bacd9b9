"""Folding the service's answers into the cache: push verdicts and pulled pages.

Both run inside the cache's write transaction and change the in-memory
:class:`~sync.client.replica.Replica` as they go; if the transaction fails the
cache reloads its memory from the file, so the two never disagree.

A push verdict of ``accepted`` keeps the event in the live state (it now waits
only for its pull); ``rejected`` removes it and rebuilds ``live`` without it, so
later pending events that depended on it (a call of a ticket whose issue was
refused) turn void too, and every one of them is reported. A pulled page moves
events into the confirmed log, drops the outbox rows the service has, and rebases
what is left (see :meth:`Replica.absorb`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection

from core.state import BranchState
from sync.client import outbox as rows
from sync.client.replica import OutboxEntry, Replica, ticket_of
from sync.client.views import Rejection
from sync.protocol import EventResult, PullResponse

REFUSED_UNSEEN = (
    "The service did not take this change (its verdict was not received; "
    "it was probably refused because the branch had moved on)"
)


@dataclass(slots=True)
class Outcome:
    """What an operation changed: tickets to rewrite in the projection, alerts to keep."""

    touched: set[str] = field(default_factory=set)
    rejections: list[Rejection] = field(default_factory=list)

    def touch(self, entries: Sequence[OutboxEntry]) -> None:
        self.touched.update(t for e in entries if (t := ticket_of(e.event)))


def rebuild(conn: Connection, replica: Replica, outcome: Outcome, before: BranchState) -> None:
    """Rebuild ``live`` from ``base`` + tail; persist and report what turned void.

    ``before`` is the live state as staff last saw it: it still knows the numbers
    of tickets whose issue has just been undone, for the alert text.
    """
    outcome.touch(replica.tail)
    for entry, exc in replica.rebuild_live():
        rows.save_status(conn, entry)
        outcome.rejections.append(rows.rejection(before, entry, str(exc), "rebase"))


def apply_push_results(
    conn: Connection, replica: Replica, results: Sequence[EventResult]
) -> Outcome:
    outcome = Outcome()
    by_id = {str(e.event.id): e for e in replica.tail}
    refused: list[OutboxEntry] = []
    gone: set[int] = set()
    for result in results:
        entry = by_id.get(str(result.event_id))
        if entry is None:
            continue  # already confirmed by a pull, or answered before
        taken = result.status == "accepted" or (
            result.status == "duplicate" and result.server_seq is not None
        )
        if taken and entry.status == "pending":
            entry.status, entry.server_seq = "accepted", result.server_seq
            rows.save_status(conn, entry)
            outcome.touch([entry])
        elif taken and entry.status == "void":
            gone.add(entry.device_seq)  # voided here but taken there: the pull brings it
        elif not taken:
            gone.add(entry.device_seq)
            if entry.applies:
                reason = result.reason or "The service refused this change"
                outcome.rejections.append(rows.rejection(replica.live, entry, reason))
                refused.append(entry)
    removed = replica.drop(gone)
    rows.remove(conn, removed)
    if refused:
        outcome.touch(removed)
        rebuild(conn, replica, outcome, replica.live)
    return outcome


@dataclass(slots=True)
class PullOutcome(Outcome):
    stored: int = 0
    confirmed_own: int = 0
    rebased: bool = False


def apply_pull(
    conn: Connection, replica: Replica, page: PullResponse, cursor: int, share: bool = False
) -> PullOutcome:
    """Store and fold the page's events after ``cursor``; rebase the tail if needed.

    Each event is parsed once, stored in one ``executemany`` and folded once into
    ``base`` (and into ``live`` only while they differ; ``share`` lets them be one,
    see :meth:`Replica.absorb`).
    """
    outcome = PullOutcome()
    fresh = [p for p in page.events if p.server_seq > cursor]
    bodies = [p.event for p in fresh]
    pulled = rows.parse_pulled(bodies)
    tickets = [ticket_of(e) for e in pulled]
    rows.store_confirmed(
        conn,
        zip(
            [p.server_seq for p in fresh],
            [str(e.id) for e in pulled],
            map(rows.dumps_pulled, bodies),
            tickets,
            strict=True,
        ),
    )
    outcome.stored = len(fresh)
    outcome.touched.update(filter(None, tickets))
    before, old_tail = replica.live, list(replica.tail)
    own: list[OutboxEntry] = []
    if old_tail:
        pulled_ids = {e.id for e in pulled}
        own = [e for e in old_tail if e.event.id in pulled_ids]
    in_step = replica.absorb(pulled, share)
    rows.remove(conn, own)
    outcome.confirmed_own = len(own)
    if not page.has_more:
        # At the head of the log every event of ours the service took has been
        # pulled; one at or below its last device_seq still here was refused.
        stale = replica.drop(
            {e.device_seq for e in replica.tail if e.device_seq <= page.last_device_seq}
        )
        rows.remove(conn, stale)
        outcome.confirmed_own += len(stale)
        for entry in stale:
            if entry.status == "pending":
                outcome.rejections.append(rows.rejection(before, entry, REFUSED_UNSEEN))
            in_step = in_step and not entry.applies
    if in_step:
        outcome.touch(own)  # their tickets are no longer unsynced
    else:
        outcome.rebased = True
        outcome.touch(old_tail)
        rebuild(conn, replica, outcome, before)
    return outcome
