"""The settings dialog: server, counter, notifications, theme and offline allowance.

It edits a copy of :class:`~desktop.settings.Preferences`; the caller saves it
with QSettings and applies it. No secret is ever asked for or kept here.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.settings import Preferences
from sync.client.credentials import MAX_OFFLINE_AGE
from sync.client.views import CounterView

MAX_OFFLINE_HOURS = int(MAX_OFFLINE_AGE.total_seconds() // 3600)


class SettingsDialog(QDialog):
    def __init__(
        self,
        prefs: Preferences,
        counters: list[CounterView],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("QueueDesk settings")
        self.setMinimumWidth(460)
        self._prefs = prefs
        self.server = QLineEdit(prefs.server_url)
        self.server.setToolTip("Used at the next sign-in")
        self.counter = QComboBox()
        self.counter.addItem("— choose at start —", "")
        for counter in counters:
            self.counter.addItem(counter.name, counter.id)
        self.counter.setCurrentIndex(max(0, self.counter.findData(prefs.counter_id)))
        self.notify = QCheckBox("Show desktop notifications for alerts")
        self.notify.setChecked(prefs.notify_desktop)
        self.severity = QComboBox()
        for label, value in (
            ("Everything", "info"),
            ("Warnings and errors", "warning"),
            ("Errors only", "error"),
        ):
            self.severity.addItem(label, value)
        self.severity.setCurrentIndex(max(0, self.severity.findData(prefs.notify_min_severity)))
        self.sound = QCheckBox("Play a sound with notifications")
        self.sound.setChecked(prefs.notify_sound)
        self.theme = QComboBox()
        self.theme.addItem("Light", "light")
        self.theme.addItem("Dark", "dark")
        self.theme.setCurrentIndex(max(0, self.theme.findData(prefs.theme)))
        self.offline_hours = QSpinBox()
        self.offline_hours.setRange(1, MAX_OFFLINE_HOURS)
        self.offline_hours.setSuffix(" hours")
        self.offline_hours.setValue(min(max(prefs.offline_max_hours, 1), MAX_OFFLINE_HOURS))
        form = QFormLayout()
        form.addRow("&Server", self.server)
        form.addRow("&Counter", self.counter)
        form.addRow("", self.notify)
        form.addRow("&Notify about", self.severity)
        form.addRow("", self.sound)
        form.addRow("&Theme", self.theme)
        form.addRow("&Offline sign-in for", self.offline_hours)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def chosen(self) -> Preferences:
        return dataclasses.replace(
            self._prefs,
            server_url=self.server.text().strip(),
            counter_id=str(self.counter.currentData() or ""),
            notify_desktop=self.notify.isChecked(),
            notify_min_severity=str(self.severity.currentData()),
            notify_sound=self.sound.isChecked(),
            theme=str(self.theme.currentData()),
            offline_max_hours=self.offline_hours.value(),
        )
