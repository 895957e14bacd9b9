"""The live queue tables follow the cache edit by edit, and stay equal to a fresh read.

The window no longer resets its queue models on each action: it removes, inserts
and updates rows (:meth:`desktop.models.QueueModel.edit`) from the cache's change
log. These tests drive every kind of change, local and pulled from the service,
and after each one compare the tables with a full read of the cache; they also
check that the once-a-second tick touches only the waited column.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QModelIndex, QPersistentModelIndex
from pytestqt.qtbot import QtBot

from core.commands import IssueTicket
from core.events import event_to_dict
from core.machine import apply, decide
from core.values import Outcome, PriorityClass, TicketNumber, TransferPosition
from desktop.bridge import SyncBridge
from desktop.live_queues import LiveQueues
from desktop.main_window import MainWindow
from desktop.models import RESET_OVER, QueueModel
from sync.client.cache import LocalCache
from sync.client.replica import new_state
from sync.client.views import QueueRow, ServiceView, WaitingChanges
from sync.protocol import (
    BranchRef,
    CounterRef,
    PulledEvent,
    PullResponse,
    ReferenceData,
    ServiceRef,
    StaffRef,
)
from tests.ui.test_widgets import BRANCH, COUNTER, COUNTER_WORK, SERVICES, STAFF, open_window

REFERENCE = ReferenceData(
    version="v1",
    branch=BranchRef(id=BRANCH, name="Main", time_zone="Europe/Berlin"),
    services=[
        ServiceRef(id=SERVICES[0], code="A", name="Accounts", target_wait_s=600),
        ServiceRef(id=SERVICES[1], code="L", name="Loans"),
    ],
    counters=[CounterRef(id=COUNTER, name="Counter 1", work_profile=SERVICES)],
    staff=[StaffRef(id=STAFF, display_name="Pat Teller")],
    pause_reasons=["Break", "Lunch"],
    permissions=COUNTER_WORK,
)


def pull_issued(cache: LocalCache, tickets: int, *, after: int = 0) -> int:
    """Tickets issued at a kiosk, arriving as a confirmed pulled log; returns the cursor."""
    state = new_state(BRANCH, REFERENCE)
    start = datetime.now(UTC) - timedelta(hours=2)
    page, seq = [], after
    for n in range(tickets):
        at = start + timedelta(seconds=n)
        service_id = SERVICES[n % 2]
        number = TicketNumber("AL"[n % 2], 500 + n + after)
        priority = PriorityClass.URGENT if n % 7 == 3 else PriorityClass.NORMAL
        command = IssueTicket(at=at, service_id=service_id, number=number, priority=priority)
        for event in decide(state, command):
            apply(state, event)
            seq += 1
            page.append(PulledEvent(server_seq=seq, event=event_to_dict(event)))
    cache.apply_pull(PullResponse(events=page, cursor=seq, has_more=False, last_device_seq=0))
    return seq


@pytest.fixture
def branch(tmp_path: Path) -> Iterator[LocalCache]:
    opened = LocalCache.open(tmp_path / "cache.sqlite3", BRANCH)
    opened.apply_reference(REFERENCE)
    try:
        yield opened
    finally:
        opened.close()


def shown(window: MainWindow, service_id: str) -> list[QueueRow]:
    model = window.queues.models[service_id]
    return [model.row(r) for r in range(model.rowCount())]


def assert_tables_match_the_cache(window: MainWindow, cache: LocalCache) -> None:
    """Every queue table holds exactly a fresh full read of its queue, in call order."""
    for index, service_id in enumerate(SERVICES):
        fresh = cache.queue_rows(service_id)
        assert shown(window, service_id) == fresh
        assert [QueueRow.of(t) for t in cache.waiting(service_id)] == fresh
        assert window.queues.tabText(index).endswith(f"({len(fresh)})")
        model = window.queues.models[service_id]
        numbers = [model.index(r, 0).data() for r in range(model.rowCount())]
        assert numbers == [t.number for t in fresh]


class Spy:
    """Counts a model's structural signals: resets, inserted and removed rows."""

    def __init__(self, model: QueueModel) -> None:
        self.resets = self.inserted = self.removed = 0
        self.changed: list[tuple[int, int, int, int]] = []
        model.modelReset.connect(self._reset)
        model.rowsInserted.connect(self._inserted)
        model.rowsRemoved.connect(self._removed)
        model.dataChanged.connect(self._changed)

    def _reset(self) -> None:
        self.resets += 1

    def _inserted(self, _parent: QModelIndex, first: int, last: int) -> None:
        self.inserted += last - first + 1

    def _removed(self, _parent: QModelIndex, first: int, last: int) -> None:
        self.removed += last - first + 1

    def _changed(self, top: QModelIndex, bottom: QModelIndex, *_roles: Any) -> None:
        self.changed.append((top.row(), bottom.row(), top.column(), bottom.column()))


def test_tables_follow_every_kind_of_change(qtbot: QtBot, branch: LocalCache) -> None:
    pull_issued(branch, 40)  # others' tickets, before the window opens
    window = open_window(qtbot, branch, COUNTER_WORK)
    workspace = window.workspace
    assert workspace is not None
    assert_tables_match_the_cache(window, branch)
    spies = {sid: Spy(window.queues.models[sid]) for sid in SERVICES}

    def step(action: Any, *args: Any) -> None:
        action(*args)
        assert_tables_match_the_cache(window, branch)

    step(workspace.open_counter)
    for priority in (PriorityClass.NORMAL, PriorityClass.URGENT, PriorityClass.PRIORITY):
        step(workspace.issue, SERVICES[0], priority)
    step(workspace.issue, SERVICES[1], PriorityClass.NORMAL, "Ada")

    def transfer(position: TransferPosition) -> None:
        ticket = workspace.current_ticket()
        assert ticket is not None
        target = SERVICES[1] if ticket.service_id == SERVICES[0] else SERVICES[0]
        workspace.transfer(target, position)

    step(workspace.call_next)
    step(workspace.recall)
    step(transfer, TransferPosition.FRONT)
    step(workspace.call_next)
    step(transfer, TransferPosition.BACK)
    step(workspace.call_next)
    step(transfer, TransferPosition.ORIGINAL)
    step(workspace.call_next)
    step(workspace.park, "fetching a passport")
    step(workspace.return_ticket, branch.parked(COUNTER)[0].id)
    step(workspace.call_next)
    step(workspace.start)
    step(workspace.complete, Outcome.SERVED)
    middle = branch.queue_rows(SERVICES[1])[5]
    step(workspace.call_ticket, middle.id)
    step(workspace.no_show)
    step(workspace.cancel, branch.queue_rows(SERVICES[0])[-1].id, "left")
    step(workspace.call_next)
    step(workspace.cancel, None, "changed their mind")
    # more of the kiosk's tickets arrive by pull, between the console's own
    pull_issued(branch, 30, after=60)
    window.refresh()
    assert_tables_match_the_cache(window, branch)
    for _ in range(5):
        step(workspace.call_next)
        step(workspace.complete)
    # the models were edited row by row: never reset, whatever happened
    assert all(spy.resets == 0 for spy in spies.values())
    assert sum(spy.inserted for spy in spies.values()) > 0
    assert sum(spy.removed for spy in spies.values()) > 0


def test_a_large_pull_reads_everything_again(qtbot: QtBot, branch: LocalCache) -> None:
    window = open_window(qtbot, branch, COUNTER_WORK)
    assert window.workspace is not None
    window.workspace.issue(SERVICES[0], PriorityClass.NORMAL)
    pull_issued(branch, RESET_OVER + 300)  # a catch-up: many more changes than a row edit
    window.refresh()
    assert_tables_match_the_cache(window, branch)
    window.workspace.open_counter()
    window.workspace.call_next()
    assert_tables_match_the_cache(window, branch)


def test_the_selected_ticket_stays_selected_when_the_head_is_called(
    qtbot: QtBot, branch: LocalCache
) -> None:
    pull_issued(branch, 20)
    window = open_window(qtbot, branch, COUNTER_WORK)
    assert window.workspace is not None
    window.workspace.open_counter()
    table, model = window.queues.tables[SERVICES[0]], window.queues.models[SERVICES[0]]
    chosen = model.row(4)
    table.selectRow(4)
    window.workspace.call_ticket(model.row(0).id)  # the row above the selection goes
    selected = table.selectionModel().selectedRows()
    assert [model.row(i.row()).id for i in selected] == [chosen.id]
    assert selected[0].row() == 3


def test_the_ticker_repaints_only_the_waited_column(qtbot: QtBot, branch: LocalCache) -> None:
    pull_issued(branch, 400)
    window = open_window(qtbot, branch, COUNTER_WORK)
    window.resize(1280, 600)
    qtbot.waitUntil(lambda: window.queues.tables[SERVICES[0]].rowAt(0) == 0)
    spies = {sid: Spy(window.queues.models[sid]) for sid in SERVICES}
    before = {sid: shown(window, sid) for sid in SERVICES}
    window.ticker.timeout.emit()
    shown_spy, hidden_spy = spies[SERVICES[0]], spies[SERVICES[1]]
    assert shown_spy.changed, "the waited times on screen did not move"
    table = window.queues.tables[SERVICES[0]]
    model_rows = window.queues.models[SERVICES[0]].rowCount()
    last_visible = table.rowAt(table.viewport().height() - 1)
    for top, bottom, left, right in shown_spy.changed:
        assert (left, right) == (QueueModel.WAITED, QueueModel.WAITED)
        assert 0 <= top <= bottom <= last_visible  # the rows on screen
        assert bottom - top + 1 < model_rows  # not all of them
    assert hidden_spy.changed == []  # the tab not on screen is repainted when shown
    for spy in spies.values():
        assert (spy.resets, spy.inserted, spy.removed) == (0, 0, 0)
    assert {sid: shown(window, sid) for sid in SERVICES} == before


def _row(ordinal: int, priority: int = 0, *, unsynced: bool = False) -> QueueRow:
    return QueueRow(-priority, 0, ordinal, f"t{ordinal:04d}", f"A{ordinal:03d}", "s", 0.0,
                    priority, "walk_in", unsynced)  # fmt: skip


def _model(rows: list[QueueRow]) -> QueueModel:
    model = QueueModel(ServiceView("s", "A", "Accounts", None, True, len(rows)))
    model.set_tickets(rows)
    return model


def test_model_edits_insert_remove_and_update_in_place(qtbot: QtBot, qtmodeltester: Any) -> None:
    rows = [_row(n) for n in range(0, 40, 2)]  # even ordinals
    model = _model(rows)
    spy = Spy(model)
    removed = [rows[0], rows[1], rows[2], rows[10], rows[19]]  # two runs and single rows
    added = [_row(5), _row(7), _row(9), _row(101), _row(100, priority=2)]  # a run at one place
    changed = rows[6]._replace(unsynced=True)  # same place, new content
    assert model.edit([*removed, rows[6]], [*added, changed])
    expected = sorted([r for r in rows if r not in removed and r != rows[6]] + added + [changed])
    assert [model.row(r) for r in range(model.rowCount())] == expected
    assert (spy.resets, spy.inserted, spy.removed) == (0, len(added), len(removed))
    assert spy.changed == [(6, 6, 0, len(QueueModel.HEADERS) - 1)]  # where it was then
    assert model.index(expected.index(changed), 4).data() == "Waiting (not synced)"
    qtmodeltester.check(model)


def test_model_edits_beyond_the_threshold_reset_once(qtbot: QtBot) -> None:
    rows = [_row(n) for n in range(0, 2 * RESET_OVER, 2)]
    model = _model(rows)
    spy = Spy(model)
    added = [_row(n) for n in range(1, 2 * RESET_OVER + 2, 2)]
    assert model.edit(rows[:3], added)
    assert [model.row(r) for r in range(model.rowCount())] == sorted(rows[3:] + added)
    assert (spy.resets, spy.inserted, spy.removed) == (1, 0, 0)


def test_an_edit_that_does_not_fit_changes_nothing(qtbot: QtBot) -> None:
    rows = [_row(n) for n in range(5)]
    model = _model(rows)
    index = QPersistentModelIndex(model.index(2, 0))
    assert not model.edit([_row(99)], [_row(7)])  # _row(99) is not shown
    assert not model.edit([], [_row(3)])  # shown already: the same edits twice
    assert [model.row(r) for r in range(model.rowCount())] == rows
    assert index.row() == 2


def test_attaching_the_window_again_applies_each_edit_once(
    qtbot: QtBot, branch: LocalCache
) -> None:
    pull_issued(branch, 6)
    window = open_window(qtbot, branch, COUNTER_WORK)
    workspace = window.workspace
    assert workspace is not None
    window.attach(workspace, SyncBridge(), COUNTER)
    workspace.issue(SERVICES[0], PriorityClass.NORMAL)
    workspace.open_counter()
    workspace.call_next()
    assert_tables_match_the_cache(window, branch)


def test_live_queues_apply_changes_and_report_edits(branch: LocalCache) -> None:
    live = LiveQueues()
    pull_issued(branch, 10)
    edits = live.apply(branch.waiting_changes(live.change))
    assert edits.reset
    assert live.queues() == {s: branch.queue_rows(s) for s in SERVICES}
    assert not live.apply(branch.waiting_changes(live.change))  # nothing new
    branch.issue_ticket(SERVICES[0], at=datetime.now(UTC), actor_id=STAFF)
    edits = live.apply(branch.waiting_changes(live.change))
    assert not edits.reset
    assert [r.id for r in edits.added[SERVICES[0]]] == [branch.queue_rows(SERVICES[0])[-1].id]
    assert edits.removed == {}
    issued = edits.added[SERVICES[0]][0]
    edits = live.apply(WaitingChanges(live.change or 0, None, [], frozenset({issued.id})))
    assert edits.removed == {SERVICES[0]: [issued]}
    assert edits.added == {}
    assert len(live) == 10
