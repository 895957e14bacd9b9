"""Qt item models over the cache's plain views: a service's queue, counters, alerts.

Each model is a thin adapter over a list of frozen values from
:mod:`sync.client.views`; it never reads the cache itself. A queue model is shown
a queue once (:meth:`QueueModel.set_tickets`), then given each read's changes
(:meth:`QueueModel.edit`) as row insertions and removals; :meth:`QueueModel.tick`
moves the waited times of the rows on screen once a second without re-reading.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from desktop import formatting as fmt
from sync.client.views import CounterView, QueueRow, ServiceView

Index = QModelIndex | QPersistentModelIndex
Clock = Callable[[], datetime]
_DISPLAY = Qt.ItemDataRole.DisplayRole
_TOOLTIP = Qt.ItemDataRole.ToolTipRole
_ALIGNMENT = Qt.ItemDataRole.TextAlignmentRole
_FOREGROUND = Qt.ItemDataRole.ForegroundRole
_QUEUE_ROLES = frozenset({_DISPLAY, _TOOLTIP, _ALIGNMENT, _FOREGROUND, Qt.ItemDataRole.UserRole})
_ALIGN_CENTER = int(Qt.AlignmentFlag.AlignCenter)
_WAITING = fmt.status("waiting")  # a queue holds waiting tickets only


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


RESET_OVER = 500  # changes at once beyond which one reset is cheaper than row edits


def _runs(positions: list[int], step: int) -> list[tuple[int, int]]:
    """Ascending positions as (first, count) runs, each ``step`` after the one before.

    Rows to remove run on consecutive positions (step 1); rows to insert at one
    place share its position (step 0).
    """
    runs: list[tuple[int, int]] = []
    for at in positions:
        if runs and at == runs[-1][0] + runs[-1][1] * step:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((at, 1))
    return runs


def _place(rows: list[QueueRow], row: QueueRow) -> int:
    """Where ``row``'s ticket is, or would go, in ``rows`` (by call order and id only)."""
    return bisect_left(rows, row[:4])  # a key-only tuple sorts before any row of that key


class QueueModel(_ListModel):
    """The waiting tickets of one service, in call order.

    Rows are :class:`~sync.client.views.QueueRow` tuples, which sort in call order,
    so a change finds its place by bisection. The owner shows a queue once
    (:meth:`set_tickets`) and then hands over each read's changes (:meth:`edit`):
    a call, an issue or a transfer removes or inserts a row or two, and a 10,000
    row table neither resets nor re-lays itself out. :meth:`tick` moves the waited
    times of the rows on screen without reading anything.
    """

    HEADERS = ("Number", "Waited", "Priority", "Channel", "Status")
    WAITED = 1
    _BRUSHES: ClassVar[dict[int, QBrush]] = {}

    def __init__(self, service: ServiceView, clock: Clock = _utc_now) -> None:
        super().__init__()
        self.service = service
        self._clock = clock
        self._rows: list[QueueRow] = []

    @property
    def tickets(self) -> list[QueueRow]:
        return list(self._rows)

    def set_tickets(self, rows: Sequence[QueueRow]) -> None:
        """Show ``rows`` (in call order) from scratch: a model reset."""
        self._replace(rows)

    def edit(self, removed: Sequence[QueueRow], added: Sequence[QueueRow]) -> bool:
        """Take out the rows ``removed`` and put the rows ``added`` in their places.

        A ticket removed and added at the same place (its row changed, not its
        order) is updated in place, so its selection stays. Returns False, having
        changed nothing, when the edits do not fit what is shown (a row to remove
        is missing, or one to add is there already): the owner then shows the
        whole queue again.
        """
        rows = self._rows
        moved = {row.id: row for row in added}
        removed_ids = {row.id for row in removed}
        updated, taken = [], []
        for old in removed:
            at = _place(rows, old)
            if at == len(rows) or rows[at].id != old.id:
                return False
            new = moved.get(old.id)
            if new is not None and new.key == old.key:
                updated.append((at, new))
                del moved[old.id]
            else:
                taken.append(at)
        for new in moved.values():
            at = _place(rows, new)
            if at < len(rows) and rows[at].id == new.id and new.id not in removed_ids:
                return False  # already shown: these edits were applied before
        if len(taken) + len(moved) > RESET_OVER:
            gone, changed = set(taken), dict(updated)
            kept = [changed.get(at, row) for at, row in enumerate(rows) if at not in gone]
            self._replace(sorted(kept + list(moved.values())))  # two sorted runs: a merge
            return True
        last = len(self.HEADERS) - 1
        for at, new in updated:
            rows[at] = new
            self.dataChanged.emit(self.index(at, 0), self.index(at, last))
        for first, count in reversed(_runs(sorted(taken), 1)):
            self.beginRemoveRows(QModelIndex(), first, first + count - 1)
            del rows[first : first + count]
            self.endRemoveRows()
        inserted = sorted(moved.values())
        done = 0
        for first, count in _runs([_place(rows, row) for row in inserted], 0):
            at = first + done
            self.beginInsertRows(QModelIndex(), at, at + count - 1)
            rows[at:at] = inserted[done : done + count]
            self.endInsertRows()
            done += count
        return True

    def tick(self, first: int = 0, last: int | None = None) -> None:
        """The waited times of rows ``first``..``last`` (default: all) moved on."""
        last = len(self._rows) - 1 if last is None else min(last, len(self._rows) - 1)
        if 0 <= first <= last:
            top, bottom = self.index(first, self.WAITED), self.index(last, self.WAITED)
            self.dataChanged.emit(top, bottom, [_DISPLAY])

    def data(self, index: Index, role: int = _DISPLAY) -> Any:
        if role not in _QUEUE_ROLES or not index.isValid():
            return None
        at = index.row()
        if not 0 <= at < len(self._rows):
            return None
        return self._value(self._rows[at], index.column(), role)

    def multiData(self, index: Index, roleDataSpan: Any) -> None:  # noqa: N802, N803
        """Every role of a cell in one call: a painted cell asks for seven at once."""
        at = index.row() if index.isValid() else -1
        row = self._rows[at] if 0 <= at < len(self._rows) else None
        column = index.column()
        for wanted in roleDataSpan:
            role = wanted.role()
            value = None
            if row is not None and role in _QUEUE_ROLES:
                value = self._value(row, column, role)
            if value is None:
                wanted.clearData()
            else:
                wanted.setData(value)

    def _value(self, row: QueueRow, column: int, role: int) -> Any:
        if role == _DISPLAY:
            return self._text(row, column)
        if role == _TOOLTIP:
            return "Not yet confirmed by the server" if row.unsynced else None
        if role == _ALIGNMENT:
            return _ALIGN_CENTER if column in (0, 1) else None
        if role == _FOREGROUND:
            return self._brush(row.priority) if column == 2 and row.priority > 0 else None
        return row.id  # the user role

    @classmethod
    def _brush(cls, priority: int) -> QBrush:
        brush = cls._BRUSHES.get(priority)
        if brush is None:
            brush = QBrush(QColor("#c62828" if priority > 1 else "#b26a00"))
            cls._BRUSHES[priority] = brush
        return brush

    def _text(self, row: QueueRow, column: int) -> str | None:
        if column == 0:
            return row.number
        if column == 1:
            return fmt.duration(self._clock().timestamp() - row.waiting_since)
        if column == 2:
            return fmt.priority(row.priority)
        if column == 3:
            return fmt.channel(row.channel)
        if column == 4:
            return _WAITING + (" (not synced)" if row.unsynced else "")
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
        rows = list(counters)
        if (rows, staff_names, service_codes) == (self._rows, self._staff, self._codes):
            return
        same_names = (staff_names, service_codes) == (self._staff, self._codes)
        if same_names and [c.id for c in rows] == [c.id for c in self._rows]:
            # a counter called, paused or closed: repaint its row, keep the table as is
            last = len(self.HEADERS) - 1
            for at, (old, new) in enumerate(zip(self._rows, rows, strict=True)):
                if old != new:
                    self._rows[at] = new
                    self.dataChanged.emit(self.index(at, 0), self.index(at, last))
            return
        self._staff, self._codes = dict(staff_names), dict(service_codes)
        self._replace(rows)

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
