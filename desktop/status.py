"""What is happening with the link: the status bar fields and the offline banner.

The status bar always shows the connection state, the number of changes waiting
in the outbox and the time of the last completed sync. While offline (or signed
out, or unlocked offline) a red banner across the top of the window says so in
words, with what still works, so nobody wonders why the queue looks quiet.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QStatusBar, QWidget

from desktop import formatting as fmt
from desktop.bridge import Connection
from desktop.theme import icon

CONNECTION_TEXT = {
    Connection.ONLINE: "Online",
    Connection.OFFLINE: "Offline",
    Connection.RECONNECTING: "Reconnecting…",
    Connection.SIGNED_OUT: "Signed out",
    Connection.NOT_SYNCING: "Not syncing",
}
_ICONS = {
    Connection.ONLINE: "online",
    Connection.OFFLINE: "offline",
    Connection.RECONNECTING: "reconnecting",
    Connection.SIGNED_OUT: "signed-out",
    Connection.NOT_SYNCING: "signed-out",
}


class ConnectionStatus:
    """Three permanent fields of a QStatusBar: connection, outbox size, last sync."""

    def __init__(self, bar: QStatusBar) -> None:
        self.state = Connection.NOT_SYNCING
        self.icon = QLabel()
        self.connection = QLabel()
        self.connection.setObjectName("connectionState")
        self.outbox = QLabel()
        self.outbox.setObjectName("outboxSize")
        self.last_sync = QLabel()
        self.last_sync.setObjectName("lastSync")
        self.user = QLabel()
        bar.addWidget(self.user, 1)
        for widget in (self.icon, self.connection, self.outbox, self.last_sync):
            bar.addPermanentWidget(widget)
        self.set_connection(Connection.NOT_SYNCING)
        self.set_outbox(0)
        self.set_last_sync(None)

    def set_connection(self, state: Connection) -> None:
        self.state = state
        self.connection.setText(CONNECTION_TEXT[state])
        self.icon.setPixmap(icon(_ICONS[state]).pixmap(14, 14))

    def set_outbox(self, count: int) -> None:
        self.outbox_count = count
        self.outbox.setText(f"Waiting to send: {count}")
        self.outbox.setToolTip("Changes made here that the server has not confirmed yet")

    def set_last_sync(self, at: datetime | None) -> None:
        self.last_sync.setText(f"Last sync: {fmt.clock(at)}")


class OfflineBanner(QFrame):
    """The red strip across the top while the console works without the server."""

    sign_in_requested = Signal()
    retry_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("offlineBanner")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.retry = QPushButton("Retry now")
        self.retry.clicked.connect(self.retry_requested)
        self.sign_in = QPushButton("Sign in…")
        self.sign_in.clicked.connect(self.sign_in_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 6)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.retry)
        layout.addWidget(self.sign_in)
        self.hide()

    def show_state(self, state: Connection, offline_until: datetime | None, pending: int) -> None:
        kept = f" {pending} change(s) are kept and will be sent later." if pending else ""
        if state is Connection.OFFLINE:
            self.text.setText(
                "OFFLINE: the server cannot be reached. Keep working; calls, "
                f"service and walk-in tickets are saved on this computer.{kept}"
            )
        elif state is Connection.SIGNED_OUT:
            self.text.setText(f"SIGNED OUT of the server: changes are not being sent.{kept}")
        elif offline_until is not None:
            until = offline_until.astimezone().strftime("%a %H:%M")
            self.text.setText(
                f"WORKING OFFLINE (unlocked without the server, allowed until {until}).{kept}"
            )
        else:
            self.hide()
            return
        self.retry.setVisible(state in (Connection.OFFLINE, Connection.RECONNECTING))
        self.sign_in.setVisible(state is Connection.SIGNED_OUT)
        self.show()
