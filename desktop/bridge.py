"""The one door between the background sync thread and the UI: Qt signals.

The sync engine reports to a :class:`~sync.client.connectivity.SyncListener` from
its own thread. :class:`BridgeListener` is that listener: each callback only
emits a signal of :class:`SyncBridge`, which lives on the UI thread, so every
connected slot runs there (queued connections) and the engine never touches a
widget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from PySide6.QtCore import QObject, Signal

from sync.client.connectivity import Alert, ConnectionState, SyncListener
from sync.client.views import AppliedPull, Rejection


class Connection(StrEnum):
    """What the status bar says about the link to the service."""

    ONLINE = "online"
    OFFLINE = "offline"
    RECONNECTING = "reconnecting"
    SIGNED_OUT = "signed_out"
    NOT_SYNCING = "not_syncing"  # no sync engine runs (no branch chosen yet)


SEVERITIES = ("info", "warning", "error")


@dataclass(frozen=True, slots=True)
class SyncAlert:
    """An alert raised by the sync engine, stamped when it reached the UI."""

    kind: str
    severity: str
    message: str
    raised_at: datetime


class SyncBridge(QObject):
    """Signals for the UI; emitted from the sync thread through :class:`BridgeListener`."""

    connection_changed = Signal(str)  # a Connection value
    pending_changed = Signal(int)  # unsent outbox rows
    applied = Signal()  # the cache changed under the UI (pulled or rebased events, a repair)
    rejected = Signal(list)  # list[Rejection]
    alert_raised = Signal(object)  # SyncAlert
    synced = Signal(object)  # datetime of the last completed sync round

    def listener(self) -> BridgeListener:
        return BridgeListener(self)


class BridgeListener(SyncListener):
    """Forwards the engine's callbacks (sync thread) to the bridge's signals."""

    def __init__(self, bridge: SyncBridge) -> None:
        self._bridge = bridge

    def on_state(self, state: ConnectionState) -> None:
        self._bridge.connection_changed.emit(Connection(state.value).value)

    def on_pending(self, count: int) -> None:
        self._bridge.pending_changed.emit(int(count))

    def on_applied(self, applied: AppliedPull) -> None:
        self._bridge.applied.emit()

    def on_repaired(self) -> None:
        self._bridge.applied.emit()

    def on_rejections(self, rejections: list[Rejection]) -> None:
        self._bridge.rejected.emit(list(rejections))

    def on_alert(self, alert: Alert) -> None:
        severity = alert.severity if alert.severity in SEVERITIES else "warning"
        raised = SyncAlert(alert.kind, severity, alert.message, datetime.now(UTC))
        self._bridge.alert_raised.emit(raised)

    def on_synced(self, at: datetime) -> None:
        self._bridge.synced.emit(at)
