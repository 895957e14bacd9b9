"""The left side of the window: the current ticket, the action buttons, parked tickets,
and the keyboard help overlay.

Buttons mirror their QAction (:mod:`desktop.actions`): a hidden action hides its
button, a disabled one disables it, and the shortcut is printed on the button.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeyEvent, QMouseEvent
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop import formatting as fmt
from desktop.actions import SPECS, ActionSpec, button_text, shortcut_text
from sync.client.views import ServiceView, TicketView

Clock = Callable[[], datetime]


class CurrentTicketPanel(QFrame):
    """Number, service, state, waited and in-service times, customer name and notes."""

    def __init__(self, clock: Clock = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self.setObjectName("currentTicket")
        self._clock = clock
        self.ticket: TicketView | None = None
        self.number = QLabel("—")
        self.number.setObjectName("ticketNumber")
        self.number.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.state = QLabel("No current ticket")
        self.state.setObjectName("ticketStatus")
        self.state.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.service = QLabel()
        self.waited = QLabel()
        self.in_service = QLabel()
        self.customer = QLabel()
        self.customer.setWordWrap(True)
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.message = QLabel()
        self.message.setObjectName("formError")
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        details = QGridLayout()
        for row, (caption, label) in enumerate(
            (
                ("Service", self.service),
                ("Waited", self.waited),
                ("In service", self.in_service),
                ("Customer", self.customer),
                ("Notes", self.notes),
            )
        ):
            details.addWidget(QLabel(f"{caption}:"), row, 0, Qt.AlignmentFlag.AlignTop)
            details.addWidget(label, row, 1)
        details.setColumnStretch(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.number)
        layout.addWidget(self.state)
        layout.addLayout(details)
        layout.addWidget(self.message)

    def show_ticket(self, ticket: TicketView | None, services: dict[str, ServiceView]) -> None:
        self.ticket = ticket
        if ticket is None:
            self.number.setText("—")
            self.state.setText("No current ticket")
            for label in (self.service, self.waited, self.in_service, self.customer, self.notes):
                label.setText("")
        else:
            service = services.get(ticket.service_id)
            self.number.setText(ticket.number)
            pending = "  (not yet synced)" if ticket.unsynced else ""
            self.state.setText(fmt.status(ticket.status) + pending)
            self.service.setText(f"{service.code} – {service.name}" if service else "?")
            self.customer.setText(ticket.customer_name or "–")
            self.notes.setText(ticket.customer_notes or "–")
        self.tick()

    def tick(self) -> None:
        ticket, now = self.ticket, self._clock()
        if ticket is None:
            return
        start = ticket.segment_started_at or ticket.issued_at
        self.waited.setText(fmt.since(start, ticket.called_at or now))
        self.in_service.setText(fmt.since(ticket.service_started_at, now))

    def say(self, text: str, error: bool = True) -> None:
        """A line under the ticket: why an action was refused (or what it did)."""
        name = "formError" if error else "formNotice"
        if self.message.objectName() != name:  # the theme styles errors and notices apart
            self.message.setObjectName(name)
            self.message.style().unpolish(self.message)
            self.message.style().polish(self.message)
        self.message.setText(text)
        self.message.setVisible(bool(text))


class ActionButton(QPushButton):
    """A push button that mirrors a QAction, with the shortcut in its text."""

    def __init__(self, spec: ActionSpec, action: QAction) -> None:
        super().__init__(action.icon(), button_text(spec))
        self.setObjectName(f"button_{spec.name}")
        self.setProperty("primary", spec.name == "call_next")
        self.setToolTip(action.toolTip())
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the shortcuts
        self.clicked.connect(action.trigger)
        self._action = action
        action.changed.connect(self._mirror)
        self._mirror()

    def _mirror(self) -> None:
        self.setEnabled(self._action.isEnabled())
        self.setVisible(self._action.isVisible())


class ActionButtons(QWidget):
    """The action buttons in groups: ticket work, counter state, reception."""

    def __init__(self, actions: dict[str, QAction]) -> None:
        super().__init__()
        self.buttons: dict[str, ActionButton] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for group, title, columns in (
            ("ticket", "Ticket", 2),
            ("counter", "Counter", 2),
            ("reception", "Reception", 1),
        ):
            box = QGroupBox(title)
            grid = QGridLayout(box)
            specs = [s for s in SPECS if s.group == group]
            for i, spec in enumerate(specs):
                button = ActionButton(spec, actions[spec.name])
                self.buttons[spec.name] = button
                grid.addWidget(button, i // columns, i % columns)
            layout.addWidget(box)


class ParkedList(QGroupBox):
    """Tickets parked at this counter (read from the cache, so kept across restarts)."""

    def __init__(self) -> None:
        super().__init__("Parked")
        self.list = QListWidget()
        self.list.setMaximumHeight(90)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)

    def show_tickets(self, tickets: list[TicketView]) -> None:
        shown = [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]
        if shown == [t.id for t in tickets] and self.isHidden() != bool(tickets):
            return
        self.list.clear()
        for ticket in tickets:
            item = QListWidgetItem(ticket.number)
            item.setData(Qt.ItemDataRole.UserRole, ticket.id)
            self.list.addItem(item)
        self.setVisible(bool(tickets))


class HelpOverlay(QFrame):
    """Every shortcut on a dark sheet over the window; any key or click closes it."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("helpOverlay")
        grid = QGridLayout(self)
        title = QLabel("<b>Keyboard shortcuts</b>  (F1 or Esc to close)")
        grid.addWidget(title, 0, 0, 1, 2)
        for row, spec in enumerate(SPECS, start=1):
            grid.addWidget(QLabel(f"<b>{shortcut_text(spec)}</b>"), row, 0)
            grid.addWidget(QLabel(f"{spec.label.rstrip('…')}: {spec.help}"), row, 1)
        grid.addWidget(QLabel("<b>F1</b>"), len(SPECS) + 1, 0)
        grid.addWidget(QLabel("Show or hide this help"), len(SPECS) + 1, 1)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.hide()

    def toggle(self) -> None:
        if self.isVisible():
            self.hide()
            return
        parent = self.parentWidget()
        assert parent is not None  # made with a parent, never reparented
        self.adjustSize()
        width, height = self.sizeHint().width(), self.sizeHint().height()
        self.setGeometry(
            max(0, (parent.width() - width) // 2),
            max(0, (parent.height() - height) // 2),
            width,
            height,
        )
        self.show()
        self.raise_()
        self.setFocus()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        self.hide()
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.hide()
        event.accept()
