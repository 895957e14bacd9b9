"""Cyclic garbage is collected on the UI thread only, never on the sync thread.

Python runs a collection in whichever thread happens to allocate past the
threshold. In the console that is often the sync thread, which parses and folds
thousands of events. A collection there may free a cycle that holds Qt objects
(a closed dialog and the slot that captured it, a previous workspace's models),
and Qt objects destroyed off the thread they live in can crash the process
inside Qt's event loop, long after the cycle was made.

:class:`GuiCollector` switches automatic collection off and runs the same
generational collections from a timer on the UI thread instead, with the
thresholds the interpreter had: a young collection when enough objects were
allocated since the last one, an older generation when enough younger
collections ran. Garbage made by the sync thread waits for the next tick; the
sync thread itself never collects.

One collector serves the process (:meth:`GuiCollector.install`); :meth:`paused`
holds collections off while a start allocates what will live as long as the
window (see ``desktop.app.start_console``).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar, Final

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer

CHECK_INTERVAL_MS: Final = 250
# The interpreter runs a full collection only once the objects that survived
# younger ones have grown by a quarter, which Python code cannot see. A full
# collection walks everything not frozen (MainWindow.attach freezes the branch's
# state), so on the UI thread it is held to once in this many seconds.
FULL_COLLECTION_GAP_S: Final = 30.0


class GuiCollector(QObject):
    """Automatic collection off; collections from a UI-thread timer (see the module doc)."""

    _installed: ClassVar[GuiCollector | None] = None

    def __init__(self, interval_ms: int = CHECK_INTERVAL_MS) -> None:
        app = QCoreApplication.instance()
        if app is None:
            raise RuntimeError("GuiCollector needs the QApplication: create it first")
        if QThread.currentThread() is not app.thread():
            raise RuntimeError("GuiCollector must be created on the UI thread")
        super().__init__()
        self.thresholds = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        self._last_full = time.monotonic()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)
        gc.disable()
        self._timer.start()

    @classmethod
    def install(cls) -> GuiCollector:
        """The process's collector, created (and automatic collection switched off) once."""
        if cls._installed is None:
            cls._installed = cls()
        return cls._installed

    @classmethod
    def installed(cls) -> GuiCollector | None:
        return cls._installed

    @property
    def active(self) -> bool:
        """Whether the timer runs (not paused, not uninstalled)."""
        return self._timer.isActive()

    def uninstall(self) -> None:
        """Stop the timer and give the interpreter its automatic collection back."""
        self._timer.stop()
        if self._was_enabled:
            gc.enable()
        if GuiCollector._installed is self:
            GuiCollector._installed = None

    def check(self) -> int:
        """Collect the generations that are due, as the interpreter would; objects freed."""
        young, middle, old = self.thresholds
        count0, count1, count2 = gc.get_count()
        if count0 <= young:
            return 0
        if count1 <= middle:
            return gc.collect(0)
        now = time.monotonic()
        if count2 <= old or now - self._last_full < FULL_COLLECTION_GAP_S:
            return gc.collect(1)
        self._last_full = now
        return gc.collect(2)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No collections in the block (the timer waits); the due ones run after it."""
        self._timer.stop()
        try:
            yield
        finally:
            self._timer.start()
