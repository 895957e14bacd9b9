"""Handling one push of a device's outbox (DESIGN "Sync" 2).

A push is all or nothing at the HTTP level and per event at the business
level. Malformed events (:class:`MalformedBatch`) and a gap in the device's
``device_seq`` (:class:`DeviceSeqGap`) refuse the whole batch before anything is
written; otherwise every event gets a verdict from
:func:`server.services.queue_append.append_events`, in the transaction that
assigns ``server_seq``, and business refusals come back as ``rejected``
results so the outbox never wedges.

Sequence rule: events already stored (by id) are duplicates wherever they
appear; every *new* event must carry the device's next ``device_seq``
(``last_device_seq + 1``, then + 2, ...). Checked under the branch lock, so a
retried push racing its own first attempt sees that attempt's rows.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import MalformedEvent
from core.events import EventBase, parse_event, validate_events
from server.models import BranchSequence, Device
from server.services import audit
from server.services.errors import Conflict
from server.services.queue_append import (
    AppendResult,
    StoredEvents,
    append_events,
    stored_events,
)
from server.services.queue_state import BranchInfo, lock_branch
from sync.protocol import EventResult, PushResponse


class MalformedBatch(ValueError):  # noqa: N818 - reads as a fact, like MalformedEvent
    """Event ``index`` of the batch cannot be taken; nothing of the batch was applied."""

    def __init__(self, index: int, message: str, *, field: str | None, event_id: str | None):
        where = f"events[{index}]" + (f" (event {event_id})" if event_id else "")
        super().__init__(f"{where}, field '{field}': {message}" if field else f"{where}: {message}")
        self.index = index
        self.field = field
        self.event_id = event_id
        self.message = message


class DeviceSeqGap(Conflict):
    """A new event does not carry the device's next ``device_seq``."""

    def __init__(self, device_id: uuid.UUID, expected: int, got: int, index: int):
        super().__init__(
            f"events[{index}] has device_seq {got}, but the next one of device {device_id} "
            f"is {expected}: push the pending events from device_seq {expected} on, in order"
        )
        self.expected = expected


@dataclass(frozen=True, slots=True)
class PushOutcome:
    response: PushResponse
    counts: dict[str, int]


def parse_batch(raw_events: Sequence[dict[str, Any]], device_id: uuid.UUID) -> list[EventBase]:
    """The events parsed, each stamped by ``device_id`` with a seq; else :class:`MalformedBatch`.

    The error is about the first event in batch order that has a problem, of any kind.
    """
    device = str(device_id)
    events = validate_events(raw_events)  # one call for a well-formed batch
    if events is None:  # some event is malformed: parse and check in order
        return [
            _stamped(index, _parse_one(index, raw), device) for index, raw in enumerate(raw_events)
        ]
    return [_stamped(index, event, device) for index, event in enumerate(events)]


def _parse_one(index: int, raw: dict[str, Any]) -> EventBase:
    try:
        return parse_event(raw)
    except MalformedEvent as exc:
        raise MalformedBatch(index, exc.message, field=exc.field, event_id=exc.event_id) from None


def _stamped(index: int, event: EventBase, device: str) -> EventBase:
    """``event``, refused unless it is the pushing device's with a seq."""
    if event.device_id != device:
        raise MalformedBatch(
            index,
            f"must be the pushing device {device}, not {event.device_id!r}",
            field="device_id",
            event_id=str(event.id),
        )
    if event.device_seq is None:
        raise MalformedBatch(
            index, "a pushed event needs its device_seq", field="device_seq",
            event_id=str(event.id),
        )  # fmt: skip
    return event


def push(
    session: Session,
    *,
    branch: BranchInfo,
    device: Device,
    events: Sequence[EventBase],
    actor: audit.Actor,
) -> PushOutcome:
    """Check the sequence, append, advance the device and audit; in the caller's transaction."""
    lock_branch(session, branch.id)
    session.flush()  # then re-read last_device_seq as of the lock, not as of the first read
    session.refresh(device, ["last_device_seq"])
    stored = stored_events(session, events)
    foreign, last_device_seq = _check_sequence(branch, device, events, stored)
    local = [e for e in events if e.id not in foreign]
    appended = iter(
        append_events(
            session,
            tenant_id=branch.tenant_id,
            branch_id=branch.id,
            events=local,
            stored=stored,
        )
        if local
        else ()
    )
    results = [_foreign_result(e) if e.id in foreign else _result(next(appended)) for e in events]
    device.last_device_seq = last_device_seq
    head = session.scalar(
        select(BranchSequence.last_server_seq).where(BranchSequence.branch_id == branch.id)
    )
    counts: dict[str, int] = dict(Counter(r.status for r in results))
    _audit(session, actor, branch, device, events, counts)
    response = PushResponse(
        results=results, last_device_seq=device.last_device_seq, server_seq=head or 0
    )
    return PushOutcome(response, counts)


def _check_sequence(
    branch: BranchInfo, device: Device, events: Sequence[EventBase], stored: StoredEvents
) -> tuple[set[uuid.UUID], int]:
    """Raise :class:`DeviceSeqGap` unless new events continue the device's sequence.

    Returns the ids already stored for *another* branch (refused without being
    stored again: their id is taken) and the device's new ``last_device_seq``.
    Such an id uses up its seq when it comes in turn, and is otherwise passed
    over like a duplicate, so re-sending the batch is still answered the same.
    """
    foreign = {event_id for event_id, row in stored.items() if row.branch_id != branch.id}
    expected = device.last_device_seq + 1
    seen: set[uuid.UUID] = set()
    for index, event in enumerate(events):
        if event.id in seen:
            continue
        seen.add(event.id)
        if event.id in foreign:
            expected += event.device_seq == expected
        elif event.id not in stored:
            if event.device_seq != expected:
                raise DeviceSeqGap(device.id, expected, event.device_seq or 0, index)
            expected += 1
    return foreign, expected - 1


def _result(appended: AppendResult) -> EventResult:
    return EventResult(
        event_id=appended.event_id,
        status=appended.status,
        server_seq=appended.server_seq,
        reason=appended.reason,
    )


def _foreign_result(event: EventBase) -> EventResult:
    reason = f"Event {event.id} was already recorded for another branch"
    return EventResult(event_id=event.id, status="rejected", reason=reason)


def _audit(
    session: Session,
    actor: audit.Actor,
    branch: BranchInfo,
    device: Device,
    events: Sequence[EventBase],
    counts: dict[str, int],
) -> None:
    seqs = [e.device_seq for e in events if e.device_seq is not None]
    audit.record_as(
        session,
        actor,
        tenant_id=branch.tenant_id,
        action="sync.push",
        object_type="device",
        object_id=str(device.id),
        details={
            "branch_id": branch.id,
            "events": len(events),
            "accepted": counts.get("accepted", 0),
            "rejected": counts.get("rejected", 0),
            "duplicate": counts.get("duplicate", 0),
            **({"device_seq": [min(seqs), max(seqs)]} if seqs else {}),
        },
    )
