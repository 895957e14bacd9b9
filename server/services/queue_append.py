"""Storing events a console already decided (its outbox), each with a verdict.

The sync push endpoint hands events here in device order. Each is validated by
:func:`core.machine.apply` against the authoritative branch state: first commit
wins, so a ticket called offline at two counters is accepted once and refused
once. Refused events are kept in the log for audit, marked, without a
``server_seq``; an event id seen before answers with its first verdict.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core.errors import DomainError
from core.events import EventBase, TicketIssued
from core.machine import apply
from server.db import DriverQuery, parse_uuid
from server.models import Device, QueueEvent, User, allocate_server_seqs
from server.services.queue_records import EventRow, need_canonical_uuid, write_events, write_tickets
from server.services.queue_state import (
    BRANCH_STATES,
    BranchInfo,
    BranchLease,
    BranchStates,
    IdLike,
)

Verdict = Literal["accepted", "rejected", "duplicate"]


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The verdict on one appended event.

    A ``duplicate`` repeats the first verdict's ``server_seq`` and ``reason``:
    a ``server_seq`` means it was accepted, a ``reason`` that it was rejected.
    """

    event_id: uuid.UUID
    status: Verdict
    server_seq: int | None = None
    reason: str | None = None


def append_events(
    session: Session,
    *,
    tenant_id: IdLike,
    branch_id: IdLike,
    events: Sequence[EventBase],
    states: BranchStates | None = None,
    stored: StoredEvents | None = None,
) -> list[AppendResult]:
    """Validate already-decided events in order against the branch and store each verdict.

    Accepted events get the next ``server_seq`` and update the projection; a
    refused one (:class:`DomainError`) is stored as ``rejected`` with the error's
    sentence and no ``server_seq``; an event id already stored answers
    ``duplicate`` with its first verdict. Checking that ``device_seq`` has no gap
    is the caller's (the push endpoint answers 409 for that). ``stored`` is
    :func:`stored_events` of ``events`` when the caller read it under the
    branch's lock already.
    """
    with (states or BRANCH_STATES).use(session, tenant_id, branch_id, lock=True) as lease:
        known = _Known.read(session, lease.branch, events, stored)
        verdicts: list[tuple[EventBase, str | None, uuid.UUID | None]] = []  # new events
        # Per input event: (index into verdicts, repeated within this batch) or a stored result.
        slots: list[tuple[int, bool] | AppendResult] = []
        first_at: dict[uuid.UUID, int] = {}
        lease.mutating = True  # apply refuses cleanly, but anything else may leave it half-done
        for event in events:
            if event.id in known.stored:
                slots.append(known.stored[event.id])
                continue
            if event.id in first_at:
                slots.append((first_at[event.id], True))
                continue
            reason = known.refusal(event, lease)
            if reason is None:
                try:
                    apply(lease.state, event)
                except DomainError as exc:
                    reason = str(exc)
            first_at[event.id] = len(verdicts)
            slots.append((len(verdicts), False))
            verdicts.append((event, reason, known.take_device_seq(event)))
        accepted = [event for event, reason, _ in verdicts if reason is None]
        seqs = iter(
            allocate_server_seqs(session, lease.branch.id, len(accepted)) if accepted else ()
        )
        rows = [
            EventRow(
                event,
                server_seq=None if reason else next(seqs),
                reason=reason,
                actor_user_id=known.user(event.actor_id),
                device_id=device_id,
            )
            for event, reason, device_id in verdicts
        ]
        tenant_id, branch_id = lease.branch.tenant_id, lease.branch.id
        write_events(session, tenant_id, branch_id, rows)
        write_tickets(session, tenant_id, branch_id, lease.state, accepted)
        if accepted:
            last = [row for row in rows if row.server_seq is not None][-1]
            lease.advanced(last.server_seq or 0, last.event.id)
        fresh = [
            AppendResult(
                row.event.id, "rejected" if row.reason else "accepted", row.server_seq, row.reason
            )
            for row in rows
        ]
        results: list[AppendResult] = []
        for slot in slots:
            if isinstance(slot, AppendResult):
                results.append(dataclasses.replace(slot, status="duplicate"))
            else:
                index, repeated = slot
                first = fresh[index]
                results.append(
                    dataclasses.replace(first, status="duplicate") if repeated else first
                )
        return results


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """What the log holds of an event id: its branch and first verdict."""

    branch_id: uuid.UUID
    accepted: bool
    server_seq: int | None
    reason: str | None


StoredEvents = dict[uuid.UUID, StoredEvent]


def stored_events(session: Session, events: Sequence[EventBase]) -> StoredEvents:
    """The log's rows of these events' ids, in any branch."""
    rows = session.execute(
        select(
            QueueEvent.id,
            QueueEvent.branch_id,
            QueueEvent.status,
            QueueEvent.server_seq,
            QueueEvent.reason,
        ).where(QueueEvent.id.in_([e.id for e in events]))
    )
    return {
        event_id: StoredEvent(branch_id, status == "accepted", seq, reason)
        for event_id, branch_id, status, seq, reason in rows
    }


# -- helpers ---------------------------------------------------------------------

_DEVICE_SEQS = DriverQuery(
    select(QueueEvent.device_seq).where(
        QueueEvent.device_id == bindparam("device_id"),
        QueueEvent.device_seq >= bindparam("first"),
        QueueEvent.device_seq <= bindparam("last"),
    )
)


@dataclass(slots=True)
class _Known:
    """What the database already holds about a batch of appended events."""

    stored: dict[uuid.UUID, AppendResult]
    foreign: set[uuid.UUID]  # ids stored in another branch: refused, not stored again
    users: set[str]
    devices: set[str]
    device_seqs: set[tuple[str | None, int | None]]
    branch: str  # the branch's id as events write it

    @classmethod
    def read(
        cls,
        session: Session,
        branch: BranchInfo,
        events: Sequence[EventBase],
        rows: StoredEvents | None = None,
    ) -> _Known:
        stored: dict[uuid.UUID, AppendResult] = {}
        foreign: set[uuid.UUID] = set()
        for event_id, row in (stored_events(session, events) if rows is None else rows).items():
            if row.branch_id == branch.id:
                verdict: Verdict = "accepted" if row.accepted else "rejected"
                stored[event_id] = AppendResult(event_id, verdict, row.server_seq, row.reason)
            else:
                foreign.add(event_id)
        actors = {_uuid_or_none(e.actor_id) for e in events} - {None}
        users = {
            str(u)
            for u in session.scalars(
                select(User.id).where(User.id.in_(actors), User.tenant_id == branch.tenant_id)
            )
        }
        device_ids = {_uuid_or_none(e.device_id) for e in events} - {None}
        devices = {
            str(d)
            for d in session.scalars(
                select(Device.id).where(
                    Device.id.in_(device_ids),
                    Device.branch_id == branch.id,
                    Device.tenant_id == branch.tenant_id,
                )
            )
        }
        # Each device's pushed seqs are contiguous: one range read per device (on
        # its unique index) instead of an IN list of every (device, seq) pair.
        spans: dict[str, tuple[int, int]] = {}
        for e in events:
            if e.device_id in devices and e.device_seq is not None:
                first, last = spans.get(e.device_id, (e.device_seq, e.device_seq))
                spans[e.device_id] = (min(first, e.device_seq), max(last, e.device_seq))
        connection = session.connection()
        used: set[tuple[str | None, int | None]] = {
            (device, seq)
            for device, (first, last) in spans.items()
            for (seq,) in _DEVICE_SEQS.rows(
                connection, {"device_id": uuid.UUID(device), "first": first, "last": last}
            )
        }
        return cls(stored, foreign, users, devices, used, str(branch.id))

    def refusal(self, event: EventBase, lease: BranchLease) -> str | None:
        """Why ``event`` cannot be taken before the domain rules are even asked, if so."""
        if event.id in self.foreign:
            return f"Event {event.id} was already recorded for another branch"
        if event.branch_id != self.branch:
            return f"Event {event.id} belongs to branch {event.branch_id}, not {lease.branch.id}"
        if isinstance(event, TicketIssued):
            try:
                need_canonical_uuid(event.ticket_id)
            except DomainError as exc:
                return str(exc)
        if (event.device_id, event.device_seq) in self.device_seqs:
            return f"device_seq {event.device_seq} of device {event.device_id} is already used"
        return None

    def user(self, actor_id: str | None) -> uuid.UUID | None:
        return parse_uuid(actor_id) if actor_id in self.users and actor_id else None

    def take_device_seq(self, event: EventBase) -> uuid.UUID | None:
        """The device column of ``event``'s row: set when the device is known and its seq free."""
        if event.device_id not in self.devices or event.device_seq is None:
            return None
        pair = (event.device_id, event.device_seq)
        if pair in self.device_seqs:
            return None
        self.device_seqs.add(pair)
        return parse_uuid(event.device_id)


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    try:
        return parse_uuid(value) if value else None
    except ValueError:
        return None
