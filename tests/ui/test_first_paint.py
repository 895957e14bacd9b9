"""AfterFirstPaint: work that waits for a new window's first paint."""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from desktop.first_paint import AfterFirstPaint


class PaintLog(QLabel):
    def __init__(self, log: list[str]) -> None:
        super().__init__("queue")
        self.log = log

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.log.append("paint")
        return super().event(event)


def test_the_callback_runs_once_just_after_the_first_paint(qtbot: QtBot) -> None:
    log: list[str] = []
    window = PaintLog(log)
    qtbot.addWidget(window)
    window.show()
    waiting = AfterFirstPaint(window, lambda: log.append("callback"), latest_ms=60_000)
    assert waiting.pending
    assert log == []  # nothing before the event loop turns
    qtbot.waitUntil(lambda: "callback" in log, timeout=5_000)
    assert log.index("paint") < log.index("callback")
    window.update()
    qtbot.waitUntil(lambda: log.count("paint") >= 2, timeout=5_000)
    assert log.count("callback") == 1
    assert not waiting.pending


def test_a_window_painted_already_gets_the_callback_on_the_next_turn(qtbot: QtBot) -> None:
    log: list[str] = []
    window = PaintLog(log)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    AfterFirstPaint(window, lambda: log.append("callback"), latest_ms=60_000)
    assert "callback" not in log
    qtbot.waitUntil(lambda: "callback" in log, timeout=5_000)


def test_a_window_that_is_not_exposed_gets_it_after_the_longest_wait(qtbot: QtBot) -> None:
    log: list[str] = []
    window = PaintLog(log)
    qtbot.addWidget(window)
    window.winId()  # a native window that is never shown, so never exposed
    AfterFirstPaint(window, lambda: log.append("callback"), latest_ms=300)
    qtbot.wait(100)
    assert log == []
    qtbot.waitUntil(lambda: log == ["callback"], timeout=5_000)


def test_the_callback_is_dropped_with_its_window(qtbot: QtBot) -> None:
    log: list[str] = []
    window = PaintLog(log)
    window.winId()
    AfterFirstPaint(window, lambda: log.append("callback"), latest_ms=50)
    shiboken6.delete(window)
    qtbot.wait(300)
    assert "callback" not in log
