"""Small dialogs of counter actions: outcome, transfer, pause reason, ticket number,
cancel reason, and issuing a walk-in ticket with its printed-style preview.

Each is opened with ``open()`` (window-modal, not blocking the event loop) and
read by the caller in its ``accepted`` slot.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QLabel,
    QLineEdit,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from core.values import Outcome, PriorityClass, TransferPosition
from desktop import formatting as fmt
from sync.client.views import ServiceView

OUTCOME_LABELS = {
    Outcome.SERVED: "Served",
    Outcome.REFERRED: "Referred elsewhere",
    Outcome.UNRESOLVED: "Unresolved",
}
POSITION_LABELS = {
    TransferPosition.BACK: "At the back of the queue",
    TransferPosition.FRONT: "At the front of the queue",
    TransferPosition.ORIGINAL: "By original join time",
}


class _FormDialog(QDialog):
    """A titled form with OK/Cancel; subclasses add rows to :attr:`form`."""

    def __init__(self, title: str, ok_text: str, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(380)
        self.form = QFormLayout()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText(ok_text)
        self.ok_button.setObjectName("primaryAction")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.layout_ = QVBoxLayout(self)
        self.layout_.addLayout(self.form)
        self.layout_.addWidget(self.buttons)


class CompleteDialog(_FormDialog):
    def __init__(self, number: str, parent: QWidget | None = None) -> None:
        super().__init__(f"Complete {number}", "Complete", parent)
        self.outcome = QComboBox()
        for outcome, label in OUTCOME_LABELS.items():
            self.outcome.addItem(label, outcome)
        self.form.addRow("&Outcome", self.outcome)

    def chosen(self) -> Outcome:
        return Outcome(self.outcome.currentData())


class TransferDialog(_FormDialog):
    def __init__(
        self,
        number: str,
        services: Sequence[ServiceView],
        current_service_id: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(f"Transfer {number}", "Transfer", parent)
        self.service = QComboBox()
        for service in services:
            if service.active and service.id != current_service_id:
                self.service.addItem(f"{service.code} – {service.name}", service.id)
        self.form.addRow("To &service", self.service)
        self.positions = QButtonGroup(self)
        box = QVBoxLayout()
        for position, label in POSITION_LABELS.items():
            button = QRadioButton(label)
            button.setObjectName(f"position_{position.value}")
            button.setProperty("position", position.value)
            self.positions.addButton(button)
            box.addWidget(button)
            button.setChecked(position is TransferPosition.BACK)
        self.form.addRow("Position", box)
        self.ok_button.setEnabled(self.service.count() > 0)

    def chosen(self) -> tuple[str, TransferPosition]:
        checked = self.positions.checkedButton()
        value = checked.property("position") if checked is not None else None
        position = TransferPosition(value or TransferPosition.BACK.value)
        return str(self.service.currentData()), position


class PauseDialog(_FormDialog):
    def __init__(self, reasons: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__("Pause the counter", "Pause", parent)
        self.reason = QComboBox()
        self.reason.setEditable(not reasons)  # the tenant's list when there is one
        self.reason.addItems(list(reasons))
        self.form.addRow("&Reason", self.reason)

    def chosen(self) -> str:
        return self.reason.currentText().strip()


class CallTicketDialog(_FormDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Call a specific ticket", "Call", parent)
        self.number = QLineEdit()
        self.number.setPlaceholderText("e.g. A042")
        self.form.addRow("Ticket &number", self.number)

    def chosen(self) -> str:
        return self.number.text().strip()


class CancelDialog(_FormDialog):
    def __init__(self, number: str, parent: QWidget | None = None) -> None:
        super().__init__(f"Cancel {number}", "Cancel ticket", parent)
        self.ok_button.setObjectName("")
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("optional")
        self.form.addRow("&Reason", self.reason)

    def chosen(self) -> str:
        return self.reason.text().strip()


class IssueTicketDialog(_FormDialog):
    def __init__(self, services: Sequence[ServiceView], parent: QWidget | None = None) -> None:
        super().__init__("Issue a walk-in ticket", "Issue ticket", parent)
        self.service = QComboBox()
        for service in services:
            if service.active:
                self.service.addItem(f"{service.code} – {service.name}", service.id)
        self.priority = QComboBox()
        for value, label in fmt.PRIORITY_LABELS.items():
            self.priority.addItem(label, int(value))
        self.customer = QLineEdit()
        self.customer.setPlaceholderText("optional")
        self.form.addRow("&Service", self.service)
        self.form.addRow("&Priority", self.priority)
        self.form.addRow("Customer &name", self.customer)
        self.ok_button.setEnabled(self.service.count() > 0)

    def chosen(self) -> tuple[str, PriorityClass, str]:
        return (
            str(self.service.currentData()),
            PriorityClass(int(self.priority.currentData())),
            self.customer.text().strip(),
        )


class TicketPreview(QDialog):
    """What the printed ticket looks like: number, service, time, and queue position."""

    def __init__(
        self,
        *,
        branch: str,
        number: str,
        service: str,
        issued_at: str,
        ahead: int,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Ticket {number}")
        paper = QFrame()
        paper.setObjectName("ticketPreview")
        paper.setMinimumWidth(280)
        lines = QVBoxLayout(paper)
        for text, name in (
            (branch, ""),
            (number, "previewNumber"),
            (service, ""),
            (f"{ahead} ahead of you" if ahead != 1 else "1 ahead of you", ""),
            (issued_at, ""),
        ):
            label = QLabel(text)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            if name:
                label.setObjectName(name)
            lines.addWidget(label)
        self.number_label = paper.findChild(QLabel, "previewNumber")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(paper)
        layout.addWidget(buttons)
