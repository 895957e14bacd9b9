"""The facts KPIs are computed from: queue segments, completions and pauses.

One pass over accepted events in branch order folds them into plain records
(see :mod:`core.kpi` for the definitions they implement). Each record maps to
one row an SQL version derives, so SQL and Python can be compared row by row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, NamedTuple

from core.errors import InvalidValue
from core.events import (
    CounterClosed,
    CounterPaused,
    CounterResumed,
    EventBase,
    ServiceStarted,
    TicketCalled,
    TicketCancelled,
    TicketCompleted,
    TicketIssued,
    TicketNoShow,
    TicketRecalled,
    TicketTransferred,
)
from core.values import Outcome


def elapsed_s(start: datetime, end: datetime) -> float:
    """Real seconds from ``start`` to ``end``.

    Both are moved to UTC first: Python subtracts two datetimes that share a tzinfo
    (e.g. both ``ZoneInfo("Europe/Berlin")``) as wall-clock times, which is an hour
    off across a DST change.
    """
    return (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds()


class SegmentEnd(StrEnum):
    COMPLETED = "completed"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"
    TRANSFERRED = "transferred"


@dataclass(frozen=True, slots=True)
class Segment:
    """One stay of a ticket in one service's queue."""

    ticket_id: str
    seq: int  # 0 from the issue, +1 per transfer: (ticket_id, seq) is unique
    number: str
    service_id: str
    started_at: datetime
    first_called_at: datetime | None
    counter_id: str | None  # the counter of the first call in this segment
    staff_id: str | None  # the actor of that first call
    wait_s: float | None  # first_called_at - started_at; None when never called
    ended_at: datetime | None
    end: SegmentEnd | None  # None while the ticket is still in this segment


@dataclass(frozen=True, slots=True)
class Completion:
    """One ``ticket.completed`` and the service time it closes."""

    ticket_id: str
    service_id: str  # the service of the segment it completes
    counter_id: str
    staff_id: str | None  # the actor of the completion
    outcome: Outcome
    started_at: datetime | None  # latest service start before it; never None for accepted events
    completed_at: datetime
    service_s: float | None


@dataclass(frozen=True, slots=True)
class Pause:
    """One pause of a counter, from ``counter.paused`` to its resume or close (or ``until``)."""

    counter_id: str
    staff_id: str | None  # the actor of the pause
    reason: str
    started_at: datetime
    ended_at: datetime
    seconds: float  # never below 0, even when ``until`` is before the pause


class Tally(NamedTuple):
    """A fact that is only counted, with where it is attributed when grouping."""

    kind: Literal["issued", "abandoned", "cancelled", "transfer", "recall"]
    at: datetime
    service_id: str | None
    counter_id: str | None
    staff_id: str | None


@dataclass(slots=True)
class Facts:
    segments: list[Segment] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)  # in the order they ended
    tallies: list[Tally] = field(default_factory=list)


@dataclass(slots=True)
class _OpenSegment:
    ticket_id: str
    seq: int
    number: str
    service_id: str
    started_at: datetime
    first_called_at: datetime | None = None
    counter_id: str | None = None
    staff_id: str | None = None
    ended_at: datetime | None = None
    end: SegmentEnd | None = None

    def close(self, at: datetime, how: SegmentEnd) -> None:
        self.ended_at, self.end = at, how

    def frozen(self) -> Segment:
        wait = (
            None
            if self.first_called_at is None
            else elapsed_s(self.started_at, self.first_called_at)
        )
        return Segment(
            self.ticket_id,
            self.seq,
            self.number,
            self.service_id,
            self.started_at,
            self.first_called_at,
            self.counter_id,
            self.staff_id,
            wait,
            self.ended_at,
            self.end,
        )


@dataclass(slots=True)
class _Track:
    issue: TicketIssued
    segment: _OpenSegment
    ever_called: bool = False
    last_start: datetime | None = None


def _need_aware(until: datetime | None) -> None:
    if until is not None and until.utcoffset() is None:
        raise InvalidValue("until", "a naive datetime has no time zone; pass an aware one")


def collect(events: Iterable[EventBase], until: datetime | None = None) -> Facts:
    """Fold events in branch order into facts; pauses still open count up to ``until``."""
    _need_aware(until)
    facts = Facts()
    tickets: dict[str, _Track] = {}
    built: list[_OpenSegment] = []
    pauses = PauseFold()
    for event in events:
        match event:
            case TicketIssued() if event.ticket_id not in tickets:
                segment = _OpenSegment(
                    event.ticket_id, 0, event.number, event.service_id, event.occurred_at
                )
                built.append(segment)
                tickets[event.ticket_id] = _Track(event, segment)
                facts.tallies.append(
                    Tally("issued", event.occurred_at, event.service_id, None, None)
                )
            case CounterPaused():
                pauses.paused(event.counter_id, event.occurred_at, event.actor_id, event.reason)
            case CounterResumed() | CounterClosed():
                pauses.ended(event.counter_id, event.occurred_at)
            case _:
                track = tickets.get(getattr(event, "ticket_id", ""))
                # A ticket whose issue is not in the input is not counted at all.
                if track is not None and track.segment.end is None:
                    _ticket_event(track, event, facts, built)
    facts.pauses = pauses.result(until)
    facts.segments = [segment.frozen() for segment in built]
    return facts


class PauseFold:
    """Pauses from a branch's counter events in order; the one fold of them.

    A pause lasts from a counter's first ``counter.paused`` to its next
    ``counter.resumed`` or ``counter.closed``. Callers that hold parsed events feed
    their fields, as do SQL reports that read only those fields of the log.
    """

    __slots__ = ("_ended", "_open")

    def __init__(self) -> None:
        self._open: dict[str, tuple[datetime, str | None, str]] = {}
        self._ended: list[Pause] = []

    def paused(self, counter_id: str, at: datetime, staff_id: str | None, reason: str) -> None:
        self._open.setdefault(counter_id, (at, staff_id, reason))

    def ended(self, counter_id: str, at: datetime) -> None:
        started = self._open.pop(counter_id, None)
        if started is not None:
            self._ended.append(_pause(counter_id, started, at))

    def still_open(self) -> list[tuple[str, datetime, str | None, str]]:
        """The pauses not ended yet, as (counter, start, staff, reason), in the order
        they started; feeding them to :meth:`paused` of a new fold carries them on."""
        return [(c, at, staff, reason) for c, (at, staff, reason) in self._open.items()]

    def result(self, until: datetime | None = None) -> list[Pause]:
        """The ended pauses in the order they ended, then (with ``until``) the open ones."""
        found = list(self._ended)
        if until is not None:
            found.extend(_pause(c, started, until) for c, started in self._open.items())
        return found


def _pause(counter_id: str, started: tuple[datetime, str | None, str], end: datetime) -> Pause:
    at, staff_id, reason = started
    return Pause(counter_id, staff_id, reason, at, end, max(0.0, elapsed_s(at, end)))


def _ticket_event(track: _Track, event: EventBase, facts: Facts, built: list[_OpenSegment]) -> None:
    segment = track.segment
    at = event.occurred_at
    match event:
        case TicketCalled():
            track.ever_called = True
            if segment.first_called_at is None:  # recalls and calls after a return keep the wait
                segment.first_called_at = at
                segment.counter_id, segment.staff_id = event.counter_id, event.actor_id
        case TicketRecalled():
            tally = Tally("recall", at, segment.service_id, event.counter_id, event.actor_id)
            facts.tallies.append(tally)
        case ServiceStarted():
            track.last_start = at
        case TicketCompleted():
            start = track.last_start
            facts.completions.append(
                Completion(
                    track.issue.ticket_id,
                    segment.service_id,
                    event.counter_id,
                    event.actor_id,
                    event.outcome,
                    start,
                    at,
                    None if start is None else elapsed_s(start, at),
                )
            )
            segment.close(at, SegmentEnd.COMPLETED)
        case TicketNoShow():
            segment.close(at, SegmentEnd.NO_SHOW)
        case TicketCancelled():
            facts.tallies.append(Tally("cancelled", at, segment.service_id, None, None))
            if not track.ever_called:
                # Attributed like the issue, so abandoned <= issued in every group.
                issue = track.issue
                tally = Tally("abandoned", issue.occurred_at, issue.service_id, None, None)
                facts.tallies.append(tally)
            segment.close(at, SegmentEnd.CANCELLED)
        case TicketTransferred():
            tally = Tally("transfer", at, segment.service_id, event.counter_id, event.actor_id)
            facts.tallies.append(tally)
            segment.close(at, SegmentEnd.TRANSFERRED)
            track.segment = _OpenSegment(
                segment.ticket_id, segment.seq + 1, segment.number, event.to_service_id, at
            )
            built.append(track.segment)
        case _:  # parked, returned: the segment goes on
            pass
