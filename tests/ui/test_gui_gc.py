"""Cyclic garbage is freed on the UI thread, however much another thread allocates.

The last two tests run :mod:`tests.ui.gc_churn` in a process of their own: widgets
freed by another thread's collection crash it (SIGSEGV, with the UI thread in its
event loop), the kind of crash the console's UI tests once had.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject
from pytestqt.qtbot import QtBot

from desktop.gui_gc import CHECK_INTERVAL_MS, GuiCollector

REPO = Path(__file__).resolve().parents[2]


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
        qtbot.wait(3 * CHECK_INTERVAL_MS)
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


def _no_core_file() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the run without it may crash


def _churn(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-m", "tests.ui.gc_churn", "4", *flags],
        cwd=REPO,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_no_core_file,
    )


def test_widgets_freed_while_another_thread_allocates_stay_on_the_ui_thread() -> None:
    done = _churn("--collector")
    assert done.returncode == 0, done.stderr[-3000:]
    freed = json.loads(done.stdout.strip().splitlines()[-1])
    assert freed["other"] == 0
    assert freed["ui"] > 100  # cycles were made and freed all along


def test_without_it_the_other_thread_frees_widgets_or_the_process_crashes() -> None:
    """The hazard itself: with the interpreter's collection, SIGSEGV usually within seconds."""
    done = _churn()
    if done.returncode == 0:
        assert json.loads(done.stdout.strip().splitlines()[-1])["other"] > 0
    else:
        assert done.returncode < 0, done.stderr[-3000:]  # killed by a signal
