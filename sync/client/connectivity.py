"""What the sync engine tells the console: connection state, alerts, and the outbox watchdog.

The engine (:mod:`sync.client.engine`) reports through a :class:`SyncListener`,
always from its own thread; the desktop bridges the calls to Qt signals. The
values it passes are plain and frozen so they can cross threads as they are.

:class:`OutboxWatchdog` is the engine's "is the outbox draining?" check, kept
apart with an injected clock so its rules can be read and tested on their own:
while the console is online and the outbox holds events, some push must make
progress every ``stuck_after_s`` seconds, or staff are told once (and told again
when it drains). It also records the longest such wait, which the chaos
benchmark reports.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sync.client.views import AppliedPull, Rejection

Severity = Literal["info", "warning", "error"]
AlertKind = Literal[
    "connection_lost",
    "connection_restored",
    "outbox_stuck",
    "outbox_draining",
    "rejected",
    "signed_out",
    "sync_error",
]


class ConnectionState(enum.Enum):
    ONLINE = "online"  # the last exchange with the service succeeded
    OFFLINE = "offline"  # the last request got no answer; working from the cache
    RECONNECTING = "reconnecting"  # trying again (also: not yet connected since start)
    SIGNED_OUT = "signed_out"  # the session ended; syncing stopped, the outbox is kept


@dataclass(frozen=True, slots=True)
class Alert:
    """Something staff should see: ``message`` is a sentence for them."""

    kind: AlertKind
    severity: Severity
    message: str


class SyncListener:
    """Receives the engine's news, in the engine's thread. Override what you need."""

    def on_state(self, state: ConnectionState) -> None:
        """The connection state changed."""

    def on_pending(self, count: int) -> None:
        """The number of events waiting in the outbox changed."""

    def on_applied(self, applied: AppliedPull) -> None:
        """Events from the service (pulled or streamed) were folded into the cache."""

    def on_repaired(self) -> None:
        """The projection disagreed with the log and was rewritten (see
        :meth:`~sync.client.base.CacheFile.verify`): read everything again."""

    def on_rejections(self, rejections: list[Rejection]) -> None:
        """Own changes that did not happen: refused by the service or dropped on rebase."""

    def on_alert(self, alert: Alert) -> None:
        """Something to show staff (connection lost/restored, outbox stuck, rejections)."""

    def on_synced(self, at: datetime) -> None:
        """A full push and pull round completed at ``at`` (UTC)."""


@dataclass(slots=True)
class SyncStats:
    """Counters of one engine's life, for tests and benchmarks (never for decisions)."""

    rounds: int = 0
    pushes: int = 0
    events_pushed: int = 0
    pulls: int = 0
    events_applied: int = 0
    stream_messages: int = 0
    stream_connects: int = 0
    rejections: int = 0
    realignments: int = 0
    batch_splits: int = 0
    leases: int = 0
    failures: int = 0
    stuck_alerts: int = 0
    longest_stuck_s: float = 0.0  # longest wait for push progress while online with a backlog


class OutboxWatchdog:
    """Decides when a backlog that does not drain deserves an alert; times the waits.

    A wait starts when the engine is online with a non-empty outbox and ends at the
    next push that made progress, when the outbox is empty, or when the engine goes
    offline (being offline is not being stuck, and has its own alert).
    """

    def __init__(self, stuck_after_s: float, stats: SyncStats) -> None:
        if stuck_after_s <= 0:
            raise ValueError("stuck_after_s must be positive")
        self.stuck_after_s = stuck_after_s
        self._stats = stats
        self._since: float | None = None
        self._alerted = False

    @property
    def alerted(self) -> bool:
        return self._alerted

    def progress(self, now: float, pending: int) -> Alert | None:
        """A push made progress; ``pending`` events are still waiting."""
        alert = self._end(now)
        self._since = now if pending else None
        return alert

    def observe(self, now: float, online: bool, pending: int) -> Alert | None:
        """A periodic look; returns the alert to raise, if any."""
        if not online:
            self._end(now)
            self._alerted = False  # the "connection lost" alert takes over
            return None
        if pending == 0:
            return self._end(now)
        if self._since is None:
            self._since = now
            return None
        waited = now - self._since
        self._stats.longest_stuck_s = max(self._stats.longest_stuck_s, waited)
        if waited < self.stuck_after_s or self._alerted:
            return None
        self._alerted = True
        self._stats.stuck_alerts += 1
        return Alert(
            "outbox_stuck",
            "warning",
            f"{pending} change(s) have not reached the server for {waited:.0f} s although "
            "it answers; they are kept and will be sent as soon as it takes them.",
        )

    def _end(self, now: float) -> Alert | None:
        if self._since is not None:
            waited = now - self._since
            self._stats.longest_stuck_s = max(self._stats.longest_stuck_s, waited)
        self._since = None
        if not self._alerted:
            return None
        self._alerted = False
        return Alert("outbox_draining", "info", "Changes are reaching the server again.")
