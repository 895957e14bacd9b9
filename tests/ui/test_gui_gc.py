"""Cyclic garbage is freed on the UI thread, however much another thread allocates."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QObject
from pytestqt.qtbot import QtBot

from desktop.gui_gc import GuiCollector


class _Cycle:
    """Half of a reference cycle with a Qt object; notes the thread that frees it."""

    def __init__(self, freed_in: list[str]) -> None:
        self.freed_in = freed_in
        self.me = self
        self.qt = QObject()

    def __del__(self) -> None:
        self.freed_in.append(threading.current_thread().name)


def _allocate_in_a_thread() -> list[list[object]]:
    """Far past the young generation's threshold, as the sync thread folding a page.

    The objects are kept (and handed back), as a fold keeps the state it builds:
    allocations freed at once would not count towards a collection.
    """
    kept: list[list[object]] = []

    def churn() -> None:
        kept.extend([] for _ in range(50 * gc.get_threshold()[0]))

    worker = threading.Thread(target=churn, name="churn")
    worker.start()
    worker.join()
    return kept


@pytest.fixture
def collector(qtbot: QtBot) -> Iterator[GuiCollector]:
    installed = GuiCollector.installed()
    if installed is not None:  # another test's console installed the process's one
        yield installed
        return
    made = GuiCollector.install()
    yield made
    made.uninstall()


def _drop_a_cycle() -> list[str]:
    freed_in: list[str] = []
    _Cycle(freed_in)  # unreachable at once, but only a collection can free it
    return freed_in


def test_a_cycle_made_garbage_is_freed_by_the_ui_thread(
    qtbot: QtBot, collector: GuiCollector
) -> None:
    assert not gc.isenabled()
    freed_in = _drop_a_cycle()
    kept = _allocate_in_a_thread()
    assert freed_in == []  # the allocating thread did not collect
    qtbot.waitUntil(lambda: freed_in != [], timeout=5_000)
    assert freed_in == [threading.main_thread().name]
    del kept


def test_without_it_the_allocating_thread_collects(qtbot: QtBot) -> None:
    """What the collector prevents, shown with the interpreter's own collection."""
    installed = GuiCollector.installed()
    if installed is not None:
        installed.uninstall()
    try:
        assert gc.isenabled()
        freed_in = _drop_a_cycle()
        kept = _allocate_in_a_thread()
        assert freed_in == ["churn"]
        del kept
    finally:
        if installed is not None:
            GuiCollector.install()


def test_paused_holds_collections_until_the_block_ends(
    qtbot: QtBot, collector: GuiCollector
) -> None:
    with collector.paused():
        assert not collector.active
        freed_in = _drop_a_cycle()
        kept = _allocate_in_a_thread()
        qtbot.wait(3 * collector._timer.interval())
        assert freed_in == []
    assert collector.active
    qtbot.waitUntil(lambda: freed_in != [], timeout=5_000)
    assert freed_in == [threading.main_thread().name]
    del kept


def test_a_check_collects_only_when_a_collection_is_due(
    qtbot: QtBot, collector: GuiCollector
) -> None:
    with collector.paused():
        gc.collect()
        assert collector.check() == 0  # nothing allocated since: nothing due
        freed_in = _drop_a_cycle()
        kept = [[] for _ in range(2 * collector.thresholds[0])]
        assert collector.check() >= 1  # a young collection was due and freed the cycle
        assert freed_in == [threading.main_thread().name]
        del kept


def test_it_needs_the_application_and_its_thread(qtbot: QtBot) -> None:
    failures: list[BaseException] = []

    def make() -> None:
        try:
            GuiCollector()
        except RuntimeError as exc:
            failures.append(exc)

    worker = threading.Thread(target=make)
    worker.start()
    worker.join()
    assert len(failures) == 1
    assert "UI thread" in str(failures[0])
