"""The branch's waiting tickets as the console holds them, and how each read changed them.

:class:`LiveQueues` keeps every service's queue as a sorted list of compact
:class:`~sync.client.views.QueueRow` values and folds in the cache's change log
(:meth:`sync.client.cache.LocalCache.waiting_changes`): an action re-reads the few
tickets it touched, never the whole queue. Each fold says what it did as
:class:`QueueEdits` (rows out, rows in, by service), which the queue tables apply
as row removals and insertions instead of starting over.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping
from dataclasses import dataclass, field

from sync.client.views import QueueRow, WaitingChanges


@dataclass(frozen=True, slots=True)
class QueueEdits:
    """What one read changed: ``removed`` and ``added`` rows by service id.

    A ticket whose row changed (say it was pushed, so no longer "unsynced", or it
    moved to another service) appears as its old row removed and its new one added.
    With ``reset`` the queues were read again whole: ``queues`` holds all of them
    (the reader's own lists: copy, never change them) and the other fields are empty.
    """

    reset: bool = False
    queues: Mapping[str, list[QueueRow]] = field(default_factory=dict)
    removed: Mapping[str, list[QueueRow]] = field(default_factory=dict)
    added: Mapping[str, list[QueueRow]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.reset or bool(self.removed) or bool(self.added)


class LiveQueues:
    """Waiting tickets by service in call order, kept current from the cache's change log."""

    def __init__(self) -> None:
        self._queues: dict[str, list[QueueRow]] = {}
        self._rows: dict[str, QueueRow] = {}  # ticket id -> its row in _queues
        self.change: int | None = None  # the cache's change number at the last read

    def queue(self, service_id: str) -> list[QueueRow]:
        """One service's rows in call order: the live list, not to be changed."""
        return self._queues.get(service_id, [])

    def queues(self) -> dict[str, list[QueueRow]]:
        """Fresh lists of every non-empty queue (the rows themselves are shared)."""
        return {sid: list(queue) for sid, queue in self._queues.items() if queue}

    def counts(self) -> dict[str, int]:
        return {sid: len(queue) for sid, queue in self._queues.items()}

    def __len__(self) -> int:
        return len(self._rows)

    def apply(self, changes: WaitingChanges) -> QueueEdits:
        """Fold ``changes`` in; returns what changed (empty when nothing a queue shows did)."""
        self.change = changes.change
        if changes.everything is not None:
            self._queues = changes.everything
            self._rows = {row.id: row for queue in self._queues.values() for row in queue}
            return QueueEdits(reset=True, queues=self._queues)
        new = {}
        for ticket in changes.tickets:
            if ticket.status == "waiting":
                new[ticket.id] = QueueRow.of(ticket)
        removed: dict[str, list[QueueRow]] = {}
        added: dict[str, list[QueueRow]] = {}
        for ticket_id in changes.gone | {t.id for t in changes.tickets}:
            old, row = self._rows.get(ticket_id), new.get(ticket_id)
            if old == row:
                continue  # rewritten, but nothing a queue shows changed
            if old is not None:
                self._take(old)
                removed.setdefault(old.service_id, []).append(old)
            if row is not None:
                insort(self._queues.setdefault(row.service_id, []), row)
                self._rows[row.id] = row
                added.setdefault(row.service_id, []).append(row)
        return QueueEdits(removed=removed, added=added)

    def _take(self, row: QueueRow) -> None:
        del self._rows[row.id]
        queue = self._queues[row.service_id]
        at = bisect_left(queue, row[:4])  # by call order and id: the key sorts first
        if at < len(queue) and queue[at] == row:
            del queue[at]
        else:  # pragma: no cover - the list is always sorted; never lose a row silently
            queue.remove(row)
