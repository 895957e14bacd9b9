"""A stress run for ``test_gui_gc``: widgets in reference cycles become garbage on the
UI thread while another thread allocates, as the sync thread does.

Run as ``python -m tests.ui.gc_churn SECONDS [--collector]``. It prints one JSON line,
how many cycles were freed on the UI thread and on the other one, and exits 0; with
the interpreter's own collection (no ``--collector``) it usually dies of SIGSEGV
within seconds, the crash :mod:`desktop.gui_gc` prevents.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop.gui_gc import GuiCollector

freed = {"ui": 0, "other": 0}


class _Panel:
    """A small widget tree with a repainting timer, held in a cycle with itself."""

    def __init__(self) -> None:
        self.me = self
        self.widget = QWidget()
        layout = QVBoxLayout(self.widget)
        for i in range(5):
            layout.addWidget(QLabel(f"label {i}"))
        layout.addWidget(QPushButton("button"))
        self.timer = QTimer(self.widget)
        self.timer.timeout.connect(self.widget.update)
        self.timer.start(5)
        self.widget.show()

    def __del__(self) -> None:
        on_ui = threading.current_thread() is threading.main_thread()
        freed["ui" if on_ui else "other"] += 1


def main() -> None:
    seconds = float(sys.argv[1])
    app = QApplication([])
    app.setQuitOnLastWindowClosed(False)
    if "--collector" in sys.argv:
        GuiCollector.install()
    stop = threading.Event()

    def allocate() -> None:
        while not stop.is_set():
            kept = [[] for _ in range(20_000)]
            time.sleep(0.001)
            del kept

    worker = threading.Thread(target=allocate, daemon=True)
    worker.start()
    end = time.monotonic() + seconds

    def step() -> None:
        for _ in range(3):
            _Panel()
        app.processEvents()
        if time.monotonic() > end:
            stop.set()
            app.quit()

    ticker = QTimer()
    ticker.timeout.connect(step)
    ticker.start(2)
    app.exec()
    worker.join()
    print(json.dumps(freed), flush=True)


if __name__ == "__main__":
    main()
