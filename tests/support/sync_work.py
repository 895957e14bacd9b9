"""Random but plausible counter work on a console's cache, for sync tests and the chaos benchmark.

:class:`RandomWork` plays one member of staff at one counter: it opens the
counter, issues walk-in tickets, calls the next one, serves it (start, complete,
no-show, transfer to the other service, park), returns parked tickets, cancels
waiting ones, pauses and resumes. Each :meth:`RandomWork.step` picks one command
from what the cache currently shows (a seeded :class:`random.Random`, so a failure
replays) and runs it through :meth:`LocalCache.execute`, exactly as the console
does. A command the local state refuses (another console called that ticket
first) is skipped and counted, never retried with a different meaning.

``clock`` gives every command its ``at``: pass a skewed clock to play a console
whose system time is wrong.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core import commands as cmd
from core.errors import DomainError
from core.events import EventBase
from core.values import TicketNumber, TransferPosition
from sync.client.cache import LocalCache

KINDS = frozenset(
    {
        "issue",
        "call",
        "start",
        "complete",
        "no_show",
        "transfer",
        "park",
        "return",
        "cancel",
        "recall",
        "open",
        "pause",
        "resume",
    }
)
"""Every kind of command :class:`RandomWork` may run."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RandomWork:
    """One counter's random work on ``cache``; see the module docstring."""

    cache: LocalCache
    rng: random.Random
    counter_id: str
    services: tuple[str, ...]
    kinds: Collection[str] = KINDS
    clock: Callable[[], datetime] = utc_now
    issue_share: float = 0.3  # of steps that issue a ticket (the rest work the counter)
    done: dict[str, int] = field(default_factory=dict)  # commands run, by kind
    refused: int = 0  # commands the local state refused
    parked: list[str] = field(default_factory=list)

    def step(self) -> list[EventBase]:
        """Run one random command; its events (stamped), or [] if none applied."""
        choice = self._choose()
        if choice is None:
            return []
        kind, command = choice
        try:
            events = self.cache.execute(command)
        except DomainError:
            self.refused += 1
            return []
        self.done[kind] = self.done.get(kind, 0) + 1
        if kind == "park":
            self.parked.append(getattr(command, "ticket_id", ""))
        return events

    def _choose(self) -> tuple[str, cmd.Command] | None:
        at, rng = self.clock(), self.rng
        roll = rng.random()
        if roll < self.issue_share and "issue" in self.kinds:
            service = rng.choice(self.services)
            number = TicketNumber("A", 1)  # the cache numbers it
            return "issue", cmd.IssueTicket(at=at, service_id=service, number=number)
        if roll < self.issue_share + 0.04 and self.parked and "return" in self.kinds:
            return "return", cmd.ReturnTicket(at=at, ticket_id=self.parked.pop(0))
        if roll < self.issue_share + 0.07 and "cancel" in self.kinds:
            waiting = self.cache.waiting(rng.choice(self.services))
            if waiting:
                ticket = rng.choice(waiting).id
                return "cancel", cmd.Cancel(at=at, ticket_id=ticket, reason="left")
        return self._counter_work(at)

    def _counter_work(self, at: datetime) -> tuple[str, cmd.Command] | None:
        rng, counter_id = self.rng, self.counter_id
        counter = next((c for c in self.cache.counters() if c.id == counter_id), None)
        if counter is None:
            return None
        options: list[tuple[str, cmd.Command]] = []
        if counter.status == "closed":
            options.append(("open", cmd.OpenCounter(at=at, counter_id=counter_id)))
        elif counter.status == "paused":
            options.append(("resume", cmd.ResumeCounter(at=at, counter_id=counter_id)))
        elif counter.current_ticket_id is None:
            options += [("call", cmd.CallNext(at=at, counter_id=counter_id))] * 8
            options.append(
                ("pause", cmd.PauseCounter(at=at, counter_id=counter_id, reason="break"))
            )
        else:
            ticket_id = counter.current_ticket_id
            current = self.cache.ticket(ticket_id)
            if current is None:
                return None
            other = [s for s in self.services if s != current.service_id]
            if current.status == "called":
                options += [("start", cmd.StartService(at=at, ticket_id=ticket_id))] * 4
                options.append(("no_show", cmd.MarkNoShow(at=at, ticket_id=ticket_id)))
                options.append(("recall", cmd.Recall(at=at, ticket_id=ticket_id)))
            options += [("complete", cmd.Complete(at=at, ticket_id=ticket_id))] * 3
            options.append(("park", cmd.Park(at=at, ticket_id=ticket_id, note="papers")))
            if other:
                position = rng.choice(list(TransferPosition))
                transfer = cmd.Transfer(
                    at=at, ticket_id=ticket_id, to_service_id=other[0], position=position
                )
                options.append(("transfer", transfer))
        allowed = [o for o in options if o[0] in self.kinds]
        return rng.choice(allowed) if allowed else None
