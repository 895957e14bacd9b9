"""What each counter action does: straight to the workspace, or through a small dialog.

Dialogs open window-modal with ``open()``; the command runs in their ``accepted``
slot. Every refusal of the core (a :class:`~core.errors.QueueDeskError`) becomes
the line under the current ticket, never an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from core.errors import QueueDeskError
from desktop.dialogs import (
    CallTicketDialog,
    CancelDialog,
    CompleteDialog,
    IssueTicketDialog,
    PauseDialog,
    TicketPreview,
    TransferDialog,
)
from desktop.workspace import NoTicket, Workspace

if TYPE_CHECKING:
    from desktop.main_window import MainWindow

log = logging.getLogger(__name__)


class ActionHandlers:
    """Binds every action of ``window.counter_actions`` to the workspace's commands."""

    def __init__(self, window: MainWindow, workspace: Workspace) -> None:
        self.window, self.workspace = window, workspace
        self.dialog: QDialog | None = None  # the one open now, for tests and focus
        bind = window.counter_actions.bind
        ws = workspace
        bind("call_next", self._did(ws.call_next, "Called the next ticket"))
        bind("recall", self._did(ws.recall, "Called again"))
        bind("start", self._did(ws.start, "Service started"))
        bind("no_show", self._did(ws.no_show, "Marked as a no-show"))
        bind("park", self._did(ws.park, "Parked"))
        bind("return", self.return_parked)
        bind("open", self._did(ws.open_counter, "Counter open"))
        bind("resume", self._did(ws.resume, "Counter open again"))
        bind("close", self._did(ws.close_counter, "Counter closed"))
        bind("call_ticket", self.call_ticket)
        bind("complete", self.complete)
        bind("transfer", self.transfer)
        bind("pause", self.pause)
        bind("cancel", lambda: self.cancel(None))
        bind("issue", self.issue)

    def _did(self, command: Callable[[], None], message: str) -> Callable[[], None]:
        def run() -> None:
            command()
            self.window.say(message, error=False)

        return run

    def _guarded(self, run: Callable[[], None]) -> None:
        """Run a dialog's command; refusals are said under the ticket."""
        self.dialog = None
        try:
            run()
        except (QueueDeskError, NoTicket) as exc:
            self.window.say(str(exc))

    def _open(self, dialog: QDialog, on_accept: Callable[[], None]) -> None:
        self.dialog = dialog
        dialog.accepted.connect(lambda: self._guarded(on_accept))
        dialog.rejected.connect(lambda: setattr(self, "dialog", None))
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()

    def _number(self) -> str:
        ticket = self.workspace.current_ticket()
        if ticket is None:
            raise NoTicket("There is no current ticket at this counter.")
        return ticket.number

    # -- actions with a dialog ---------------------------------------------------------

    def call_ticket(self) -> None:
        dialog = CallTicketDialog(self.window)

        def run() -> None:
            number = dialog.chosen()
            ticket = self.workspace.cache.ticket_by_number(number)
            if ticket is None:
                raise NoTicket(f"There is no ticket {number} today.")
            self.call_id(ticket.id)

        self._open(dialog, run)

    def call_id(self, ticket_id: str) -> None:
        self.workspace.call_ticket(ticket_id)
        self.window.say("Called", error=False)

    def complete(self) -> None:
        number = self._number()
        dialog = CompleteDialog(number, self.window)

        def run() -> None:
            self.workspace.complete(dialog.chosen())
            self.window.say(f"Completed {number}", error=False)

        self._open(dialog, run)

    def transfer(self) -> None:
        ticket = self.workspace.current_ticket()
        if ticket is None:
            raise NoTicket("There is no current ticket at this counter.")
        services = self.workspace.cache.services()
        dialog = TransferDialog(ticket.number, services, ticket.service_id, self.window)

        def run() -> None:
            service_id, position = dialog.chosen()
            self.workspace.transfer(service_id, position)
            self.window.say(f"Transferred {ticket.number}", error=False)

        self._open(dialog, run)

    def pause(self) -> None:
        reference = self.workspace.reference()
        reasons = list(reference.pause_reasons) if reference else []
        dialog = PauseDialog(reasons, self.window)

        def run() -> None:
            self.workspace.pause(dialog.chosen())
            self.window.say("Counter paused", error=False)

        self._open(dialog, run)

    def cancel(self, ticket_id: str | None) -> None:
        if ticket_id is None:
            number = self._number()
        else:
            found = self.workspace.cache.ticket(ticket_id)
            number = found.number if found else "ticket"
        dialog = CancelDialog(number, self.window)

        def run() -> None:
            self.workspace.cancel(ticket_id, dialog.chosen())
            self.window.say(f"Cancelled {number}", error=False)

        self._open(dialog, run)

    def return_parked(self) -> None:
        chosen = self.window.parked.list.currentItem()
        snapshot = self.workspace.snapshot()
        if chosen is not None:
            ticket_id = str(chosen.data(Qt.ItemDataRole.UserRole))
        elif snapshot.parked:
            ticket_id = snapshot.parked[0].id
        else:
            raise NoTicket("No ticket is parked here.")
        self.workspace.return_ticket(ticket_id)
        self.window.say("Returned to the front of the queue", error=False)

    def issue(self) -> None:
        services = self.workspace.cache.services()
        dialog = IssueTicketDialog(services, self.window)

        def run() -> None:
            service_id, priority, name = dialog.chosen()
            issued = self.workspace.issue(service_id, priority, name or None)
            service = next((s for s in services if s.id == service_id), None)
            ahead = self.workspace.waiting_count(service_id) - 1
            reference = self.workspace.reference()
            preview = TicketPreview(
                branch=reference.branch.name if reference else "",
                number=issued.number,
                service=service.name if service else "",
                issued_at=issued.occurred_at.astimezone().strftime("%d %b %Y  %H:%M"),
                ahead=max(0, ahead),
                parent=self.window,
            )
            self.window.say(f"Issued {issued.number}", error=False)
            self.dialog = preview
            preview.finished.connect(preview.deleteLater)
            preview.open()

        self._open(dialog, run)
