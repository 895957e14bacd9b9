"""The cache's in-memory branch state: the confirmed one and the live one on top.

The console must answer a command in a few milliseconds, so it never replays its log
per command. It keeps two :class:`core.state.BranchState` objects:

- ``base``: the confirmed log (pulled events, ``server_seq`` order) folded;
- ``live``: ``base`` plus this device's own events the pull has not yet returned
  (the outbox ``tail``, in ``device_seq`` order). Commands are decided against it
  and the projection is written from it.

A pull folds the new confirmed events into ``base``. While they are exactly the
head of the tail (our own events coming back) or the tail is used up, ``live`` is
advanced the same way and nothing is rebuilt; otherwise ``live`` is rebuilt as a
copy of ``base`` with the tail replayed on top (the rebase). A pending event that
no longer applies becomes ``void``: no longer applied, reported, but still pushed,
because the service wants contiguous ``device_seq`` values (and keeps refused
events for audit). Copying ``base`` costs one pass over the tickets, far less than
replaying the log.

While no own event applies on top (the tail is empty or void) ``live`` equals
``base``; a pull of many pages (a new device's first sync, a console back from a
long outage) then lets the two be one object (:meth:`Replica.absorb` with
``share``), so each event folds once, and :meth:`Replica.detach` copies ``base``
again before ``live`` is changed alone.

``replayable`` says whether ``base`` is what replaying the confirmed log with the
current reference data would give (it is, unless reference data that removed a
service or counter or changed a service code was applied in place); only then
may it be saved as the file's snapshot (:mod:`sync.client.snapshot`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar

from core.errors import DomainError
from core.events import EventBase
from core.machine import apply
from core.ordering import ServiceQueue, WaitingIndex
from core.state import BranchState, Counter, CounterConfig, ServiceConfig, Ticket
from core.state_codec import STATE_FIELDS
from core.values import TimeZoneName
from sync.protocol import ReferenceData

log = logging.getLogger(__name__)

OutboxStatus = Literal["pending", "accepted", "void"]
NO_ZONE = "UTC"  # until reference data arrives the branch has no services, so no zone matters


@dataclass(slots=True)
class OutboxEntry:
    """One of this device's events that the pull has not yet returned."""

    device_seq: int
    event: EventBase
    status: OutboxStatus
    server_seq: int | None = None

    @property
    def applies(self) -> bool:
        return self.status != "void"


def ticket_of(event: EventBase) -> str | None:
    ticket_id = getattr(event, "ticket_id", None)
    return ticket_id if isinstance(ticket_id, str) else None


_T = TypeVar("_T")


def _shallow_copier(cls: type[_T]) -> Callable[[_T], _T]:
    """A fast ``copy.copy`` for a slotted dataclass whose fields all go to ``__init__``."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if len(fields) < 2 or not all(f.init for f in fields):
        return copy.copy
    values = operator.attrgetter(*(f.name for f in fields))
    make: Callable[..., _T] = cls
    return lambda obj: make(*values(obj))


_copy_ticket = _shallow_copier(Ticket)
_copy_counter = _shallow_copier(Counter)


def clone_state(state: BranchState) -> BranchState:
    """An independent copy of ``state``, sharing only immutable values."""
    if tuple(f.name for f in dataclasses.fields(state)) != STATE_FIELDS:
        # core grew a field this copy does not know: be slow rather than share it.
        return copy.deepcopy(state)
    copy_ticket, copy_counter = _copy_ticket, _copy_counter
    waiting = WaitingIndex(
        {
            sid: ServiceQueue(queue.general.copy(), queue.appointments.copy())
            for sid, queue in state.waiting.queues.items()
        }
    )
    return dataclasses.replace(
        state,
        services=dict(state.services),
        counters={cid: copy_counter(c) for cid, c in state.counters.items()},
        tickets={tid: copy_ticket(t) for tid, t in state.tickets.items()},
        numbers=dict(state.numbers),
        waiting=waiting,
    )


def configure(state: BranchState, reference: ReferenceData) -> None:
    """Bring ``state``'s configuration in line with ``reference``, in place.

    Folding never reads names, codes or work profiles, so this gives the state it
    would have had with this reference data from the start. Services and counters
    missing from ``reference`` are kept: old events still name them.
    """
    branch = reference.branch
    state.time_zone = TimeZoneName(branch.time_zone)
    state.day_starts_at_min = branch.day_starts_at_min
    for service in reference.services:
        state.services[service.id] = ServiceConfig(
            service.id, service.code, service.name, service.target_wait_s
        )
    for ref in reference.counters:
        profile = tuple(ref.work_profile)
        counter = state.counters.get(ref.id)
        if counter is None:
            state.counters[ref.id] = Counter(ref.id, ref.name, profile)
        else:
            counter.name, counter.work_profile = ref.name, profile


def new_state(branch_id: str, reference: ReferenceData | None) -> BranchState:
    if reference is None:
        return BranchState.new(branch_id, NO_ZONE)
    services = [ServiceConfig(s.id, s.code, s.name, s.target_wait_s) for s in reference.services]
    counters = [CounterConfig(c.id, c.name, tuple(c.work_profile)) for c in reference.counters]
    branch = reference.branch
    return BranchState.new(
        branch_id, branch.time_zone, services, counters, branch.day_starts_at_min
    )


def configures_like_new(state: BranchState, reference: ReferenceData) -> bool:
    """Whether :func:`configure` on ``state`` gives what folding its log anew would.

    Folding reads which services and counters exist and the services' codes, so it
    does unless ``reference`` drops one of them or changes a code, or nothing was
    folded yet.
    """
    if state.applied == 0:
        return True
    codes = {s.id: s.code for s in reference.services}
    counters = {c.id for c in reference.counters}
    return (
        all(codes.get(sid) == s.code for sid, s in state.services.items())
        and set(state.counters) <= counters
    )


class Replica:
    """``base`` (confirmed), ``tail`` (own unconfirmed events) and ``live`` = base + tail."""

    def __init__(
        self, branch_id: str, reference: ReferenceData | None, base: BranchState | None = None
    ) -> None:
        self.branch_id = branch_id
        self.reference = reference
        self.base = base if base is not None else new_state(branch_id, reference)
        self.live = new_state(branch_id, reference)
        self.tail: list[OutboxEntry] = []
        self.skipped = 0  # confirmed events that did not fold (see confirm)
        self.folded = 0  # confirmed events folded (or skipped) by this instance
        self.replayable = True  # base is what a replay of the log would give (see module doc)

    @property
    def shared(self) -> bool:
        return self.live is self.base

    def detach(self) -> BranchState:
        """``live``, made a separate copy of ``base`` first if the two were shared."""
        if self.live is self.base:
            self.live = clone_state(self.base)
        return self.live

    def confirm(self, event: EventBase, state: BranchState | None = None) -> None:
        """Fold a confirmed event into ``state`` (default ``base``).

        The service accepted it, so it must fold; if it does not (reference data
        behind the log), it is left out and counted, and the next reference data
        triggers a full reload rather than a silent divergence.
        """
        if state is None:
            self.folded += 1
        try:
            apply(self.base if state is None else state, event)
        except DomainError as exc:
            if state is None:
                self.skipped += 1
            log.warning("confirmed event %s does not fold locally: %s", event.id, exc)

    def load(self, confirmed: Iterable[EventBase], tail: list[OutboxEntry]) -> None:
        """Fold the confirmed log (or what follows a snapshot of it) into ``base``.

        Call :meth:`rebuild_live` next.
        """
        for event in confirmed:
            self.confirm(event)
        self.tail = tail

    def set_reference(self, reference: ReferenceData) -> bool:
        """Use new reference data; True when the log must be replayed from scratch."""
        self.replayable = self.replayable and configures_like_new(self.base, reference)
        self.reference = reference
        configure(self.base, reference)
        if self.live is not self.base:
            configure(self.live, reference)
        return self.skipped > 0

    def unsynced_tickets(self) -> set[str]:
        return {t for e in self.tail if e.status == "pending" and (t := ticket_of(e.event))}

    def rebuild_live(self) -> list[tuple[OutboxEntry, DomainError]]:
        """``live`` = copy of ``base`` + tail; pending events that no longer apply turn void.

        Returns the events voided, with the reason. An accepted (pushed, not yet
        pulled) event that does not apply is only skipped: the service has it, and
        the pull will bring it back in its place.
        """
        live = clone_state(self.base)
        voided: list[tuple[OutboxEntry, DomainError]] = []
        for entry in self.tail:
            if not entry.applies:
                continue
            try:
                apply(live, entry.event)
            except DomainError as exc:
                if entry.status == "pending":
                    entry.status = "void"
                    voided.append((entry, exc))
        self.live = live
        return voided

    def absorb(self, pulled: list[EventBase], share: bool = False) -> bool:
        """Fold confirmed events into ``base`` and drop them from the tail.

        Returns True when ``live`` is still ``base`` + tail (our own events came
        back in order, or others' events arrived after our tail was used up), False
        when it must be rebuilt with :meth:`rebuild_live`. With ``share``, when no
        own event applies on top, ``live`` becomes ``base`` itself rather than
        folding every event twice (more pages to come: see :meth:`detach`).
        """
        active = [e for e in self.tail if e.applies]
        if share and not active:
            self.live = self.base  # equal until now: nothing applies on top of base
        in_step = True
        if self.live is self.base:
            for event in pulled:
                self.confirm(event)
        else:
            at = 0
            for event in pulled:
                self.confirm(event)
                if not in_step:
                    continue
                if at < len(active) and active[at].event.id == event.id:
                    at += 1
                elif at == len(active):
                    self.confirm(event, self.live)
                else:
                    in_step = False
        if self.tail:
            ids = {e.id for e in pulled}
            self.tail = [e for e in self.tail if e.event.id not in ids]
        return in_step

    def drop(self, device_seqs: set[int]) -> list[OutboxEntry]:
        """Remove tail entries by ``device_seq``; returns the removed ones."""
        gone = [e for e in self.tail if e.device_seq in device_seqs]
        self.tail = [e for e in self.tail if e.device_seq not in device_seqs]
        return gone
