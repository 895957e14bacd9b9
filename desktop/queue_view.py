"""The right side of the window: one queue table per service, and the counters overview.

The tables are views over :class:`~desktop.models.QueueModel` and
:class:`~desktop.models.CountersModel`; one timer tick per second moves the
waited times without reading the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QMenu,
    QTableView,
    QTabWidget,
    QWidget,
)

from desktop.models import CountersModel, QueueModel
from sync.client.views import ServiceView, TicketView

Clock = Callable[[], datetime]


def _table() -> QTableView:
    table = QTableView()
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setAlternatingRowColors(True)
    table.verticalHeader().hide()
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    return table


class QueueTabs(QTabWidget):
    """A tab per service with its waiting tickets in call order."""

    call_requested = Signal(str)  # ticket id
    cancel_requested = Signal(str)  # ticket id

    def __init__(self, clock: Clock = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self.setObjectName("queueTabs")
        self._clock = clock
        self.models: dict[str, QueueModel] = {}
        self.tables: dict[str, QTableView] = {}
        self.can_call = False
        self.can_cancel = False

    def show_queues(
        self, services: list[ServiceView], waiting: dict[str, list[TicketView]]
    ) -> None:
        active = [s for s in services if s.active]
        if [s.id for s in active] != list(self.models):
            self._rebuild(active)
        for index, service in enumerate(active):
            tickets = waiting.get(service.id, [])
            self.models[service.id].set_tickets(tickets)
            self.setTabText(index, f"{service.code} {service.name} ({len(tickets)})")

    def _rebuild(self, services: list[ServiceView]) -> None:
        self.clear()
        self.models.clear()
        self.tables.clear()
        for service in services:
            model = QueueModel(service, self._clock)
            table = _table()
            table.setObjectName(f"queue_{service.code}")
            table.setModel(model)
            table.doubleClicked.connect(lambda index, m=model: self._call(m.row(index.row()).id))
            table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
            table.customContextMenuRequested.connect(
                lambda pos, t=table, m=model: self._menu(t, m, pos)
            )
            self.models[service.id] = model
            self.tables[service.id] = table
            self.addTab(table, service.code)

    def _call(self, ticket_id: str) -> None:
        if self.can_call:
            self.call_requested.emit(ticket_id)

    def _menu(self, table: QTableView, model: QueueModel, pos: QPoint) -> None:
        index = table.indexAt(pos)
        if not index.isValid():
            return
        ticket = model.row(index.row())
        menu = QMenu(self)
        call = menu.addAction(f"Call {ticket.number} now")
        call.setEnabled(self.can_call)
        call.triggered.connect(lambda: self.call_requested.emit(ticket.id))
        cancel = menu.addAction(f"Cancel {ticket.number}…")
        cancel.setEnabled(self.can_cancel)
        cancel.triggered.connect(lambda: self.cancel_requested.emit(ticket.id))
        menu.popup(table.viewport().mapToGlobal(pos))

    def tick(self) -> None:
        for model in self.models.values():
            model.tick()


class CountersTable(QTableView):
    """Who serves what at the branch."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("countersOverview")
        self.model_ = CountersModel()
        self.setModel(self.model_)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().hide()
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)


def section(title: str, widget: QWidget) -> QTabWidget:
    """A one-tab tab widget: a titled frame that looks like its neighbours."""
    tabs = QTabWidget()
    tabs.addTab(widget, title)
    return tabs
