"""The right side of the window: one queue table per service, and the counters overview.

The tables are views over :class:`~desktop.models.QueueModel` and
:class:`~desktop.models.CountersModel`. The queue models follow the workspace's
:class:`~desktop.live_queues.LiveQueues` edit by edit (:meth:`QueueTabs.edit`);
one timer tick per second repaints the waited times of the rows on screen, in the
tab on screen, without reading the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from PySide6.QtCore import QEvent, QPoint, QSize, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QMenu,
    QTableView,
    QTabWidget,
    QWidget,
)

from desktop.live_queues import LiveQueues, QueueEdits
from desktop.models import CountersModel, QueueModel
from sync.client.views import QueueRow, ServiceView

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
        self.source: LiveQueues | None = None  # what a model starts over from, if it must
        self.can_call = False
        self.can_cancel = False
        self._laid_out: tuple[QSize, QSize, QSize] | None = None

    def event(self, event: QEvent) -> bool:
        # A new tab title (the count moved on) posts a layout request, and QTabWidget
        # answers every one by repainting itself whole: the table, at each call. When
        # no size it lays out from changed, nothing would move, so skip it.
        if event.type() == QEvent.Type.LayoutRequest:
            sizes = (self.tabBar().sizeHint(), self.sizeHint(), self.minimumSizeHint())
            if sizes == self._laid_out:
                return True
            self._laid_out = sizes
        return super().event(event)

    def show_queues(
        self, services: list[ServiceView], waiting: Mapping[str, Sequence[QueueRow]]
    ) -> None:
        """Show a tab per active service; the rows of a new tab come from ``waiting``.

        Tabs kept from before already follow the queues through :meth:`edit`.
        """
        active = [s for s in services if s.active]
        if [s.id for s in active] != list(self.models):
            self._rebuild(active, waiting)
        for index, service in enumerate(active):
            model, rows = self.models[service.id], waiting.get(service.id, ())
            if model.rowCount() != len(rows):  # never expected: the edits keep them equal
                model.set_tickets(rows)
            text = f"{service.code} {service.name} ({len(rows)})"
            if self.tabText(index) != text:
                self.tabBar().setTabText(index, text)

    def edit(self, edits: QueueEdits) -> None:
        """Apply one read's changes to the models of the services they touch."""
        if edits.reset:
            for service_id, model in self.models.items():
                model.set_tickets(edits.queues.get(service_id, ()))
            return
        for service_id in edits.removed.keys() | edits.added.keys():
            model = self.models.get(service_id)
            if model is None:
                continue  # no tab: an inactive service
            removed, added = edits.removed.get(service_id, ()), edits.added.get(service_id, ())
            if not model.edit(removed, added) and self.source is not None:
                model.set_tickets(self.source.queue(service_id))

    def _rebuild(
        self, services: list[ServiceView], waiting: Mapping[str, Sequence[QueueRow]]
    ) -> None:
        self.clear()
        self.models.clear()
        self.tables.clear()
        for service in services:
            model = QueueModel(service, self._clock)
            model.set_tickets(waiting.get(service.id, ()))
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
        """Repaint the waited times on screen: the rows in view of the tab in view."""
        table = self.currentWidget()
        if not isinstance(table, QTableView) or not table.isVisible():
            return
        model = table.model()
        first = table.rowAt(0)
        if not isinstance(model, QueueModel) or first < 0:
            return
        last = table.rowAt(table.viewport().height() - 1)
        model.tick(first, last if last >= 0 else None)


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
