"""Alerts: the panel staff acknowledge them in, and the notifications that announce them.

Two sources feed one list. Rejections of this console's changes and numbering
warnings are kept by the cache until acknowledged (``cache:<id>``); the sync
engine's alerts (connection lost and restored, outbox not draining, sync errors)
live for the session (``sync:<n>``). :class:`Notifier` shows new ones as tray
messages where a system tray exists, else as an in-app toast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSystemTrayIcon,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import SEVERITIES, SyncAlert
from desktop.models import _ListModel
from desktop.theme import icon
from sync.client.views import Alert

Index = QModelIndex | QPersistentModelIndex
_COLOURS = {"error": "#c62828", "warning": "#b26a00", "info": "#2e6da4"}
TOAST_MS = 8000


@dataclass(frozen=True, slots=True)
class AlertItem:
    key: str
    severity: str  # info | warning | error
    title: str
    message: str
    created_at: datetime
    cache_id: int | None = None

    @classmethod
    def from_cache(cls, alert: Alert) -> AlertItem:
        if alert.kind == "rejected":
            title, severity = "Change refused", "error"
        else:
            title, severity = "Ticket number", "warning"
        return cls(
            f"cache:{alert.id}",
            severity,
            title,
            f"{alert.description}: {alert.reason}",
            alert.created_at,
            alert.id,
        )

    @classmethod
    def from_sync(cls, number: int, alert: SyncAlert) -> AlertItem:
        title = alert.kind.replace("_", " ").capitalize()
        return cls(f"sync:{number}", alert.severity, title, alert.message, alert.raised_at)


def rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 1


class AlertsModel(_ListModel):
    HEADERS = ("Time", "Severity", "Alert")

    def __init__(self) -> None:
        super().__init__()
        self._all: list[AlertItem] = []
        self.min_severity = "info"

    @property
    def items(self) -> list[AlertItem]:
        return list(self._rows)

    def set_items(self, items: Sequence[AlertItem]) -> None:
        self._all = sorted(items, key=lambda a: a.created_at, reverse=True)
        self._refilter()

    def set_min_severity(self, severity: str) -> None:
        self.min_severity = severity
        self._refilter()

    def _refilter(self) -> None:
        floor = rank(self.min_severity)
        shown = [a for a in self._all if rank(a.severity) >= floor]
        if shown != self._rows:
            self._replace(shown)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        item: AlertItem = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return (
                item.created_at.astimezone().strftime("%H:%M:%S"),
                item.severity.capitalize(),
                f"{item.title}: {item.message}",
            )[index.column()]
        if role == Qt.ItemDataRole.ToolTipRole:
            return item.message
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == 1:
            return QBrush(QColor(_COLOURS.get(item.severity, "#000000")))
        if role == Qt.ItemDataRole.UserRole:
            return item.key
        return None


class AlertsPanel(QWidget):
    """The alerts table with a severity filter and acknowledge buttons."""

    acknowledged = Signal(list)  # list[AlertItem]

    def __init__(self) -> None:
        super().__init__()
        self.model = AlertsModel()
        self.filter = QComboBox()
        self.filter.setObjectName("severityFilter")
        for label, severity in (
            ("All alerts", "info"),
            ("Warnings and errors", "warning"),
            ("Errors only", "error"),
        ):
            self.filter.addItem(label, severity)
        self.filter.currentIndexChanged.connect(
            lambda _i: self.model.set_min_severity(str(self.filter.currentData()))
        )
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setWordWrap(True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideNone)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.ack = QPushButton("Acknowledge")
        self.ack.clicked.connect(self._ack_selected)
        self.ack_all = QPushButton("Acknowledge all")
        self.ack_all.clicked.connect(lambda: self.acknowledged.emit(self.model.items))
        row = QHBoxLayout()
        row.addWidget(QLabel("Show:"))
        row.addWidget(self.filter)
        row.addStretch(1)
        row.addWidget(self.ack)
        row.addWidget(self.ack_all)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.table)

    def _ack_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        items = [self.model.row(r) for r in rows]
        if items:
            self.acknowledged.emit(items)


class Toast(QFrame):
    """An in-app notification in the window's top-right corner; hides by itself."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("toast")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setMinimumWidth(300)
        self.label.setMaximumWidth(460)
        layout = QHBoxLayout(self)
        layout.addWidget(self.label)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.hide)
        self.hide()

    def show_message(self, title: str, message: str, severity: str) -> None:
        self.setProperty("severity", severity)
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(f"<b>{title}</b><br>{message}")
        self.adjustSize()
        self.place()
        self.show()
        self.raise_()
        self.timer.start(TOAST_MS)

    def place(self) -> None:
        """Top-right corner of the window, below its top bar."""
        parent = self.parentWidget()
        assert parent is not None  # made with a parent, never reparented
        self.move(max(0, parent.width() - self.width() - 16), 56)

    def hideEvent(self, event: Any) -> None:  # noqa: N802
        self.timer.stop()
        super().hideEvent(event)


class Notifier:
    """Desktop notifications: the system tray where there is one, else a toast."""

    def __init__(self, window: QWidget, *, use_tray: bool | None = None) -> None:
        tray_ok = QSystemTrayIcon.isSystemTrayAvailable() if use_tray is None else use_tray
        self.tray: QSystemTrayIcon | None = None
        if tray_ok:
            self.tray = QSystemTrayIcon(icon("queuedesk"), window)
            self.tray.setToolTip("QueueDesk")
            self.tray.show()
        self.toast = Toast(window)
        self.enabled = True
        self.min_severity = "warning"
        self.shown: list[tuple[str, str]] = []  # (title, message), newest last

    def notify(self, title: str, message: str, severity: str) -> None:
        if not self.enabled or rank(severity) < rank(self.min_severity):
            return
        self.shown.append((title, message))
        if self.tray is not None and self.tray.supportsMessages():
            kind = {
                "error": QSystemTrayIcon.MessageIcon.Critical,
                "warning": QSystemTrayIcon.MessageIcon.Warning,
            }.get(severity, QSystemTrayIcon.MessageIcon.Information)
            self.tray.showMessage(title, message, kind, TOAST_MS)
        else:
            self.toast.show_message(title, message, severity)

    def close(self) -> None:
        self.toast.timer.stop()
        if self.tray is not None:
            self.tray.hide()
