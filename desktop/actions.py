"""The counter's actions: one QAction each, with its shortcut, permission and handler.

:data:`SPECS` is the single list the buttons, the keyboard shortcuts and the
help overlay are built from, so they cannot disagree. :class:`CounterActions`
enables each action from the current :class:`~desktop.workspace.Snapshot` and
hides those the user's role does not allow (never offered, then refused).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from core.errors import QueueDeskError
from desktop.theme import icon
from desktop.workspace import NoTicket, Snapshot, Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    label: str
    shortcut: str
    icon: str
    permission: str
    help: str
    group: str  # "ticket" | "counter" | "reception"


SPECS: tuple[ActionSpec, ...] = (
    ActionSpec("call_next", "Call next", "F2", "call-next", "tickets.call",
               "Call the next ticket of this counter's services", "ticket"),
    ActionSpec("call_ticket", "Call ticket…", "F3", "call-ticket", "tickets.call",
               "Call a specific ticket by its number", "ticket"),
    ActionSpec("recall", "Recall", "F4", "recall", "tickets.call",
               "Call the current ticket again", "ticket"),
    ActionSpec("start", "Start", "F5", "start", "tickets.serve",
               "The customer has arrived: start serving", "ticket"),
    ActionSpec("complete", "Complete…", "F6", "complete", "tickets.serve",
               "Finish the ticket and record the outcome", "ticket"),
    ActionSpec("no_show", "No-show", "F7", "no-show", "tickets.serve",
               "The called customer did not come", "ticket"),
    ActionSpec("transfer", "Transfer…", "F8", "transfer", "tickets.transfer",
               "Send the ticket to another service (front, back or original place)", "ticket"),
    ActionSpec("park", "Park", "F9", "park", "tickets.park",
               "Set the ticket aside, e.g. while the customer fetches a document", "ticket"),
    ActionSpec("return", "Return parked", "Shift+F9", "return", "tickets.park",
               "Put the oldest parked ticket back at the front of its queue", "ticket"),
    ActionSpec("cancel", "Cancel ticket…", "Ctrl+Del", "cancel", "tickets.cancel",
               "Cancel the current ticket", "ticket"),
    ActionSpec("issue", "Issue ticket…", "Ctrl+N", "issue", "tickets.issue",
               "Issue a walk-in ticket and show the printed ticket", "reception"),
    ActionSpec("open", "Open counter", "Ctrl+O", "open", "counters.operate",
               "Open the counter and start calling", "counter"),
    ActionSpec("pause", "Pause…", "Ctrl+P", "pause", "counters.operate",
               "Pause the counter with a reason", "counter"),
    ActionSpec("resume", "Resume", "Ctrl+R", "resume", "counters.operate",
               "Resume a paused counter", "counter"),
    ActionSpec("close", "Close counter", "Ctrl+Shift+W", "close", "counters.operate",
               "Close the counter at the end of the shift", "counter"),
)  # fmt: skip
SPEC_BY_NAME = {s.name: s for s in SPECS}


def shortcut_text(spec: ActionSpec) -> str:
    return QKeySequence(spec.shortcut).toString(QKeySequence.SequenceFormat.NativeText)


def button_text(spec: ActionSpec) -> str:
    return f"{spec.label}  [{shortcut_text(spec)}]"


def enabled_actions(snapshot: Snapshot) -> set[str]:
    """Which actions make sense now (permissions aside): the state machine's view."""
    names = {"issue"} if any(s.active for s in snapshot.services) else set()
    counter = snapshot.counter
    if snapshot.parked:
        names.add("return")
    if counter is None:
        return names
    current = snapshot.current
    if counter.status == "closed":
        names.add("open")
    if counter.status == "paused":
        names.add("resume")
    if counter.status in ("open", "paused") and current is None:
        names.add("close")
    if counter.status == "open" and current is None:
        names |= {"pause", "call_ticket"}
        if any(snapshot.waiting.get(s) for s in counter.work_profile):
            names.add("call_next")
    if current is not None:
        names |= {"transfer", "park", "cancel", "complete"}
        if current.status == "called":
            names |= {"recall", "start", "no_show"}
    return names


class CounterActions(QObject):
    """The QActions of the window; ``handlers`` maps action names to callables."""

    failed = Signal(str)  # a sentence for the member of staff: why the action did nothing
    done = Signal(str)  # what the action did

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.actions: dict[str, QAction] = {}
        self._handlers: dict[str, Callable[[], None]] = {}
        for spec in SPECS:
            action = QAction(icon(spec.icon), spec.label, window)
            action.setObjectName(f"action_{spec.name}")
            action.setShortcut(QKeySequence(spec.shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.setToolTip(f"{spec.help} ({shortcut_text(spec)})")
            action.setEnabled(False)
            action.triggered.connect(lambda _=False, name=spec.name: self.run(name))
            window.addAction(action)
            self.actions[spec.name] = action

    def bind(self, name: str, handler: Callable[[], None]) -> None:
        self._handlers[name] = handler

    def run(self, name: str) -> None:
        """Run one action's handler; domain refusals become a :attr:`failed` message."""
        action = self.actions[name]
        if not (action.isEnabled() and action.isVisible()):
            return
        handler = self._handlers.get(name)
        if handler is None:
            return
        try:
            handler()
        except (QueueDeskError, NoTicket) as exc:
            log.info("%s refused: %s", name, exc)
            self.failed.emit(str(exc))

    def update(self, workspace: Workspace | None, snapshot: Snapshot | None) -> None:
        allowed = workspace.permissions if workspace is not None else frozenset()
        possible = enabled_actions(snapshot) if snapshot is not None else set()
        for spec in SPECS:
            action = self.actions[spec.name]
            permitted = spec.permission in allowed
            action.setVisible(permitted)
            action.setEnabled(permitted and spec.name in possible)
