"""Doing something once a newly shown window has been painted.

Qt paints a window that was just shown while it handles the window's first
expose event. Work that would compete with that paint for the interpreter (the
sync thread's first comparison of the cache with its log holds the GIL, and the
paint needs it for every call into a Python model or widget) starts just after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QWidget

LATEST_MS: Final = 500  # a window that is not exposed (minimised) waits no longer


class AfterFirstPaint(QObject):
    """Call ``callback`` once, just after ``window``'s first paint, or after ``latest_ms``.

    A window painted already (exposed) gets the callback on the next turn of the
    event loop. The callback is dropped if the window is destroyed first.
    """

    def __init__(
        self, window: QWidget, callback: Callable[[], None], latest_ms: int = LATEST_MS
    ) -> None:
        super().__init__(window)
        self._callback: Callable[[], None] | None = callback
        handle = window.windowHandle()
        if handle is None or handle.isExposed():
            QTimer.singleShot(0, self, self._fire)
            return
        handle.installEventFilter(self)
        QTimer.singleShot(latest_ms, self, self._fire)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Expose:
            watched.removeEventFilter(self)
            # The filter runs before the window handles the event (and paints); a
            # zero timer fires once that is done.
            QTimer.singleShot(0, self, self._fire)
        return False

    @property
    def pending(self) -> bool:
        return self._callback is not None

    def _fire(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()
