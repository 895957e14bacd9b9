"""The branch's live dashboard: the queue now and today's figures, for report readers.

:class:`DashboardData` is computed from the main window's
:class:`~desktop.workspace.Snapshot` (waiting tickets, counters) and today's
report from the cache's SQL (:meth:`~sync.client.cache.LocalCache.report` for the
branch-local day). :class:`Dashboard` shows it as tiles and a per-service table;
the window refreshes it whenever events arrive, and :meth:`Dashboard.tick` moves
the waited times once a second without reading anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from core.kpi import KpiReport
from desktop.models import Index, _ListModel
from desktop.report_data import minutes, shown
from sync.client.views import CounterView, QueueRow, ServiceView

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class ServiceNow:
    service: ServiceView
    waiting: int
    oldest: datetime | None  # when the longest-waiting ticket joined this queue


@dataclass(frozen=True, slots=True)
class DashboardData:
    services: list[ServiceNow]
    counters_open: int
    counters_paused: int
    counters_total: int
    today: KpiReport

    @classmethod
    def of(
        cls,
        services: list[ServiceView],
        waiting: dict[str, list[QueueRow]],
        counters: list[CounterView],
        today: KpiReport,
    ) -> DashboardData:
        rows = []
        for service in services:
            queue = waiting.get(service.id, [])
            since = min((r.waiting_since for r in queue), default=None)
            oldest = None if since is None else datetime.fromtimestamp(since, UTC)
            rows.append(ServiceNow(service, len(queue), oldest))
        return cls(
            services=[r for r in rows if r.service.active or r.waiting],
            counters_open=sum(1 for c in counters if c.status == "open"),
            counters_paused=sum(1 for c in counters if c.status == "paused"),
            counters_total=len(counters),
            today=today,
        )

    @property
    def waiting(self) -> int:
        return sum(s.waiting for s in self.services)

    @property
    def oldest(self) -> datetime | None:
        found = [s.oldest for s in self.services if s.oldest is not None]
        return min(found) if found else None


def waited(since: datetime | None, now: datetime) -> str:
    return "–" if since is None else minutes(max(0.0, (now - since).total_seconds()))


class ServicesNowModel(_ListModel):
    """Waiting now per service: count, longest wait, and the service's SLA target."""

    HEADERS = ("Service", "Waiting", "Longest", "Target")

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock

    def set_rows(self, rows: list[ServiceNow]) -> None:
        self._replace(rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row: ServiceNow = self.row(index.row())
        column = index.column()
        if role == Qt.ItemDataRole.TextAlignmentRole and column > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        target = row.service.target_wait_s
        return (
            f"{row.service.code} – {row.service.name}",
            str(row.waiting),
            waited(row.oldest, self._clock()),
            "none" if target is None else minutes(target),
        )[column]

    def tick(self) -> None:
        if self._rows:
            top, bottom = self.index(0, 2), self.index(len(self._rows) - 1, 2)
            self.dataChanged.emit(top, bottom, [Qt.ItemDataRole.DisplayRole])


class Tile(QFrame):
    """A figure with its caption."""

    def __init__(self, name: str, caption: str) -> None:
        super().__init__()
        self.setObjectName("dashboardTile")
        self.value = QLabel("–")
        self.value.setObjectName("tileValue")
        self.value.setAccessibleName(caption)
        self.caption = QLabel(caption)
        self.caption.setObjectName("tileCaption")
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(0)
        layout.addWidget(self.value)
        layout.addWidget(self.caption)
        self.name = name

    def set(self, text: str) -> None:
        self.value.setText(text)


TILES = (
    ("waiting", "Waiting now"),
    ("longest", "Longest wait now"),
    ("counters", "Counters open · paused"),
    ("served", "Served today"),
    ("median", "Median wait today"),
    ("p90", "p90 wait today"),
    ("sla", "SLA attainment today"),
    ("no_show", "No-shows today"),
)


class Dashboard(QWidget):
    """Tiles for the branch now and today, and the waiting queue per service."""

    def __init__(self, clock: Clock = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self.setObjectName("dashboard")
        self._clock = clock
        self.data: DashboardData | None = None
        self.tiles = {name: Tile(name, caption) for name, caption in TILES}
        grid = QGridLayout()
        grid.setSpacing(8)
        for i, (name, _caption) in enumerate(TILES):
            grid.addWidget(self.tiles[name], i // 4, i % 4)
        self.model = ServicesNowModel(clock)
        self.table = QTableView()
        self.table.setObjectName("servicesNow")
        self.table.setModel(self.model)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setAlternatingRowColors(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(grid, 5)
        layout.addWidget(self.table, 3)
        self.table.setMinimumWidth(300)

    def show_data(self, data: DashboardData) -> None:
        self.data = data
        today = data.today
        self.tiles["waiting"].set(f"{data.waiting:,}")
        self.tiles["counters"].set(f"{data.counters_open} · {data.counters_paused}")
        self.tiles["counters"].setToolTip(f"{data.counters_total} counters at the branch")
        self.tiles["served"].set(shown("count", today.served))
        self.tiles["median"].set(shown("seconds", today.wait.p50))
        self.tiles["p90"].set(shown("seconds", today.wait.p90))
        self.tiles["sla"].set(shown("rate", today.sla_attainment))
        self.tiles["no_show"].set(shown("count", today.no_show))
        self.model.set_rows(data.services)
        updated = f"Today's figures as of {self._clock().astimezone():%H:%M:%S}, from this console"
        self.setToolTip(updated)
        self.tick()

    def tick(self) -> None:
        data = self.data
        if data is None:
            return
        self.tiles["longest"].set(waited(data.oldest, self._clock()))
        self.model.tick()

    def figure(self, name: str) -> str:
        """The text a tile shows (for tests and accessibility)."""
        return self.tiles[name].value.text()

    def service_row(self, code: str) -> tuple[str, ...]:
        for r in range(self.model.rowCount()):
            if self.model.row(r).service.code == code:
                return tuple(
                    str(self.model.data(self.model.index(r, c)))
                    for c in range(self.model.columnCount(QModelIndex()))
                )
        raise KeyError(code)
