"""Wire schemas of the sync protocol, shared by the client and the central service.

The event payloads themselves are :mod:`core.events`; this module holds the
envelopes around them (push batches, pull pages, stream messages, leases) and
the limits both ends agree on. Events travel as plain JSON objects inside the
envelopes and are parsed with :func:`core.events.parse_event` one by one, so a
malformed event is reported by its position and field, not as a generic
schema error.

Offline ticket numbers (DESIGN "Sync" 5): a device issues from number blocks it
leased while online (``POST /sync/leases``). Leases are handed out from 1 upward
and never reach :data:`FALLBACK_FLOOR`. When a device has run out of leased
numbers while offline it issues from the *fallback zone* above that floor,
striding by its branch-unique ``slot`` (see
:func:`core.numbering.fallback_numbers`): two
devices of one branch never share a fallback number, and no lease ever hands
one out.

A new device's first pull (``after=0``) may ask for the branch's state with
``state=true`` (:class:`BranchStateBody`): when the log is longer than that page,
the service adds its own fold of the log, so the device stores the events without
folding each one and starts from the service's state once it holds them all.
Pull's other fields and paging are the same either way; a service that does not
send a state is simply folded as before.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.numbering import FALLBACK_FLOOR, MAX_DEVICE_SLOTS, fallback_numbers

__all__ = ["FALLBACK_FLOOR", "MAX_DEVICE_SLOTS", "fallback_numbers"]  # re-exported from core

PROTOCOL_VERSION: Final = 1

MAX_PUSH_EVENTS: Final = 1000
"""Most events one push may carry; more answer 413."""
MAX_PUSH_BYTES: Final = 4 * 1024 * 1024
"""Largest push body accepted; more answer 413."""
MAX_PULL_LIMIT: Final = 5000
"""Most events one pull page returns (``limit`` is clamped to this)."""
DEFAULT_PULL_LIMIT: Final = 1000

HEARTBEAT_S: Final = 15.0
"""Seconds between stream heartbeats; a client missing three reconnects."""

DEVICE_HEADER: Final = "QueueDesk-Device"
"""Request header naming the calling device (its UUID) on every sync call."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- push --------------------------------------------------------------------------


class PushRequest(_Wire):
    """Events of one device for one branch, in ``device_seq`` order, starting at the
    device's next unacknowledged seq (or any already-acknowledged seq: duplicates are
    answered with their first verdict)."""

    branch_id: uuid.UUID
    device_id: uuid.UUID
    events: Annotated[list[dict[str, Any]], Field(max_length=MAX_PUSH_EVENTS)]


class EventResult(_Wire):
    event_id: uuid.UUID
    status: Literal["accepted", "rejected", "duplicate"]
    server_seq: int | None = None  # set when (first) accepted
    reason: str | None = None  # set when (first) rejected: a sentence for staff


class PushResponse(_Wire):
    results: list[EventResult]
    last_device_seq: int  # the highest device_seq the service holds for this device
    server_seq: int  # the branch's head after this push


# -- pull and stream -----------------------------------------------------------------


class PulledEvent(_Wire):
    server_seq: int
    event: dict[str, Any]  # core.events JSON form, with device_id/device_seq when pushed


class ServiceRef(_Wire):
    id: str
    code: str
    name: str
    target_wait_s: int | None = None
    active: bool = True


class CounterRef(_Wire):
    id: str
    name: str
    work_profile: list[str]
    active: bool = True


class StaffRef(_Wire):
    id: str
    display_name: str


class BranchRef(_Wire):
    id: str
    name: str
    time_zone: str
    day_starts_at_min: int = 0


class ReferenceData(_Wire):
    """What a console needs to work offline, versioned by a content hash."""

    version: str
    branch: BranchRef
    services: list[ServiceRef]
    counters: list[CounterRef]
    staff: list[StaffRef]
    pause_reasons: list[str]
    permissions: list[str]  # the caller's effective permissions in this branch
    device_slot: int | None = None  # the device's fallback slot (None: no fallback numbers)


class BranchStateBody(_Wire):
    """The branch's state as the service folded its log up to ``server_seq``.

    Sent with the first page of a new device's first pull (``state=true``) when the
    log is longer than that page: the device stores the events that follow without
    folding them and starts from this state once it holds every event up to
    ``server_seq``. ``body`` is :func:`core.state_codec.encode` of the state, in the
    codec's ``format``; ``events`` is how many accepted events the log holds up to
    ``server_seq`` and ``event_id`` the last one's id, so the device can tell that
    what it stored is what was folded.
    """

    format: int
    server_seq: Annotated[int, Field(ge=1)]
    event_id: uuid.UUID
    events: Annotated[int, Field(ge=1)]
    body: str


class PullResponse(_Wire):
    events: list[PulledEvent]  # accepted events with server_seq > after, ascending
    cursor: int  # pass as ``after`` next time
    has_more: bool
    last_device_seq: int  # the highest device_seq the service holds for the calling device
    reference: ReferenceData | None = None  # only when ``ref_version`` differs
    state: BranchStateBody | None = None  # only when asked for with ``state=true``


class StreamMessage(_Wire):
    """Payload of an SSE ``events`` message (the SSE id is ``cursor``)."""

    events: list[PulledEvent]
    cursor: int


# -- leases --------------------------------------------------------------------------


class LeaseRequest(_Wire):
    """Top up the device's number blocks for ``business_day`` (default: the branch's
    today). For each service (all active ones when ``service_ids`` is empty) whose
    unused leased numbers ``have`` fall below ``min_remaining``, one block is leased."""

    branch_id: uuid.UUID
    device_id: uuid.UUID
    business_day: date | None = None
    service_ids: list[uuid.UUID] = []
    have: dict[str, int] = {}  # service id -> unused leased numbers the device still holds
    min_remaining: Annotated[int, Field(ge=0, le=1000)] = 50


class LeaseBlock(_Wire):
    service_id: str
    prefix: str
    business_day: date
    first: int
    last: int


class LeaseResponse(_Wire):
    leases: list[LeaseBlock]
    device_slot: int | None = None
