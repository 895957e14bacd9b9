"""The report window's tables: text rows over a thin Qt model, and the branch comparison."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

from desktop.models import Index, _ListModel
from desktop.report_data import shown, throughput_per_hour
from sync.client.reports_api import BranchRow


class TextTableModel(_ListModel):
    """Rows of text under headers; numbers (every column but the first) align right."""

    def __init__(self, headers: Sequence[str] = ()) -> None:
        super().__init__()
        self.HEADERS = tuple(headers)

    def set_table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.beginResetModel()
        self.HEADERS = tuple(headers)
        self._rows = [tuple(r) for r in rows]
        self.endResetModel()

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._rows[index.row()][index.column()]
        return None

    def column(self, header: str) -> list[str]:
        at = self.HEADERS.index(header)
        return [r[at] for r in self._rows]

    def cell(self, first: str, header: str) -> str:
        at = self.HEADERS.index(header)
        for row in self._rows:
            if row[0] == first:
                return str(row[at])
        raise KeyError(first)


def table(name: str, model: TextTableModel, stretch: bool = False) -> QTableView:
    table = QTableView()
    table.setObjectName(name)
    table.setModel(model)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setAlternatingRowColors(True)
    table.verticalHeader().hide()
    header = table.horizontalHeader()
    if stretch:
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    else:
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
    return table


COMPARISON_HEADERS = (
    "Branch",
    "Issued",
    "Served",
    "No-shows",
    "Mean wait",
    "p90 wait",
    "SLA attainment",
    "No-show rate",
    "Abandonment rate",
    "Throughput (served/h)",
)


def comparison_rows(rows: Sequence[BranchRow]) -> list[tuple[str, ...]]:
    return [
        (
            f"{r.name} ({r.code})",
            shown("count", r.kpis.issued),
            shown("count", r.kpis.served),
            shown("count", r.kpis.no_show),
            shown("seconds", r.kpis.wait.mean),
            shown("seconds", r.kpis.wait.p90),
            shown("rate", r.kpis.sla_attainment),
            shown("rate", r.kpis.no_show_rate),
            shown("rate", r.kpis.abandonment_rate),
            shown("number", throughput_per_hour(r.kpis)),
        )
        for r in rows
    ]
