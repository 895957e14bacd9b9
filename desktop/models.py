"""Qt item models over the cache's plain views: a service's queue, counters, alerts.

Each model is a thin adapter over a list of frozen values from
:mod:`sync.client.views`; it never reads the cache itself. The owner hands it a
fresh list (:meth:`QueueModel.set_tickets`) and calls :meth:`QueueModel.tick`
once a second so waited times move without re-reading anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from desktop import formatting as fmt
from sync.client.views import CounterView, ServiceView, TicketView

Index = QModelIndex | QPersistentModelIndex
Clock = Callable[[], datetime]
_DISPLAY = Qt.ItemDataRole.DisplayRole
_ALIGN_CENTER = int(Qt.AlignmentFlag.AlignCenter)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _ListModel(QAbstractTableModel):
    """A read-only table over a list of rows; subclasses say the columns and cells."""

    HEADERS: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[Any] = []

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = _DISPLAY
    ) -> Any:
        horizontal = orientation == Qt.Orientation.Horizontal
        if role == _DISPLAY and horizontal and 0 <= section < len(self.HEADERS):
            return self.HEADERS[section]
        return None

    def row(self, index: int) -> Any:
        return self._rows[index]

    def _replace(self, rows: Sequence[Any]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()


def _blocks(rows: list[int]) -> list[tuple[int, int]]:
    """Ascending row numbers as (first, last) runs of consecutive rows."""
    runs: list[tuple[int, int]] = []
    for row in rows:
        if runs and runs[-1][1] == row - 1:
            runs[-1] = (runs[-1][0], row)
        else:
            runs.append((row, row))
    return runs


class QueueModel(_ListModel):
    """The waiting tickets of one service, in call order."""

    HEADERS = ("Number", "Waited", "Priority", "Channel", "Status")
    WAITED = 1

    def __init__(self, service: ServiceView, clock: Clock = _utc_now) -> None:
        super().__init__()
        self.service = service
        self._clock = clock

    @property
    def tickets(self) -> list[TicketView]:
        return list(self._rows)

    def set_tickets(self, tickets: Sequence[TicketView]) -> None:
        """Show ``tickets``, as row moves where possible so selection and scroll stay.

        A call or an issue changes a few rows of a long queue: those rows are
        removed, inserted or updated, instead of resetting (and re-laying out) the
        whole table. Only a reordering of the remaining rows resets the model.
        """
        new = list(tickets)
        if new == self._rows:  # views are shared between reads: mostly identity checks
            return
        if not self._patch(new):
            self._replace(new)

    def _patch(self, new: list[TicketView]) -> bool:
        keep = {t.id for t in new}
        gone = [i for i, t in enumerate(self._rows) if t.id not in keep]
        for first, last in reversed(_blocks(gone)):
            self.beginRemoveRows(QModelIndex(), first, last)
            del self._rows[first : last + 1]
            self.endRemoveRows()
        present = {t.id for t in self._rows}
        if [t.id for t in new if t.id in present] != [t.id for t in self._rows]:
            return False  # the order of the remaining tickets changed
        row = at = 0
        while at < len(new):
            ticket = new[at]
            if ticket.id in present:
                if self._rows[row] != ticket:
                    self._rows[row] = ticket
                    last = self.index(row, len(self.HEADERS) - 1)
                    self.dataChanged.emit(self.index(row, 0), last)
                row, at = row + 1, at + 1
                continue
            end = at
            while end < len(new) and new[end].id not in present:
                end += 1
            self.beginInsertRows(QModelIndex(), row, row + end - at - 1)
            self._rows[row:row] = new[at:end]
            self.endInsertRows()
            row, at = row + end - at, end
        return True

    def tick(self) -> None:
        if self._rows:
            top, bottom = self.index(0, self.WAITED), self.index(len(self._rows) - 1, self.WAITED)
            self.dataChanged.emit(top, bottom, [_DISPLAY])

    def data(self, index: Index, role: int = _DISPLAY) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        ticket: TicketView = self._rows[index.row()]
        column = index.column()
        if role == _DISPLAY:
            return self._text(ticket, column)
        if role == Qt.ItemDataRole.ToolTipRole and ticket.unsynced:
            return "Not yet confirmed by the server"
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (0, 1):
            return _ALIGN_CENTER
        if role == Qt.ItemDataRole.ForegroundRole and column == 2 and ticket.priority > 0:
            return QBrush(QColor("#c62828" if ticket.priority > 1 else "#b26a00"))
        if role == Qt.ItemDataRole.UserRole:
            return ticket.id
        return None

    def _text(self, ticket: TicketView, column: int) -> str | None:
        if column == 0:
            return ticket.number
        if column == 1:
            return fmt.since(ticket.segment_started_at or ticket.issued_at, self._clock())
        if column == 2:
            return fmt.priority(ticket.priority)
        if column == 3:
            return fmt.channel(ticket.channel)
        if column == 4:
            suffix = " (not synced)" if ticket.unsynced else ""
            return fmt.status(ticket.status) + suffix
        return None


class CountersModel(_ListModel):
    """Who serves what: every counter of the branch, with its current ticket."""

    HEADERS = ("Counter", "State", "Serving", "Staff", "Services")

    def __init__(self) -> None:
        super().__init__()
        self._staff: dict[str, str] = {}
        self._codes: dict[str, str] = {}

    def set_counters(
        self,
        counters: Sequence[CounterView],
        staff_names: dict[str, str],
        service_codes: dict[str, str],
    ) -> None:
        if (list(counters), staff_names, service_codes) == (self._rows, self._staff, self._codes):
            return
        self._staff, self._codes = dict(staff_names), dict(service_codes)
        self._replace(counters)

    def data(self, index: Index, role: int = _DISPLAY) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        counter: CounterView = self._rows[index.row()]
        if role == Qt.ItemDataRole.UserRole:
            return counter.id
        if role != _DISPLAY:
            return None
        column = index.column()
        if column == 0:
            return counter.name
        if column == 1:
            state = fmt.status(counter.status)
            return f"{state}: {counter.pause_reason}" if counter.pause_reason else state
        if column == 2:
            return counter.current_ticket_number or "–"
        if column == 3:
            return self._staff.get(counter.staff_id or "", "–") if counter.staff_id else "–"
        if column == 4:
            return " ".join(self._codes.get(s, "?") for s in counter.work_profile)
        return None
