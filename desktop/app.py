"""Starting the console: logging, the Qt application, the qasync loop, the crash hook.

:func:`run` is what ``queuedesk`` (and ``python -m desktop``) calls. The UI thread
runs Qt's event loop through qasync, so UI code can ``await`` sign-in; the sync
engine runs in its own thread (:mod:`desktop.sync_link`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

# The console's non-Qt half before PySide6: once imported, PySide6 reads the source
# of each module an import statement hands back, looking for its ``__feature__``
# switches. Imported first, the 400-odd modules of SQLAlchemy, pydantic, httpx and
# our core never pass through that (about 80 ms of every start).
import core.commands
import core.kpi  # noqa: F401
import desktop.live_queues
import desktop.report_data
import desktop.session  # noqa: F401
import sync.client.thread  # noqa: F401

# isort: split
# PySide6 next: qasync uses a Qt binding already imported, and without one it
# tries PyQt5, PyQt6 and PySide2 first (10-30 ms of failed imports at start).
from PySide6.QtCore import QTimer  # isort: skip
import qasync
from PySide6.QtWidgets import QApplication

from desktop.console import Console, SignInRequest
from desktop.gui_gc import GuiCollector
from desktop.logs import CrashReporter, setup_logging, stop_logging
from desktop.settings import ConsoleSettings
from desktop.theme import icon
from sync.client.credentials import open_credential_store
from sync.client.paths import default_data_dir

log = logging.getLogger(__name__)


def display_problem() -> str | None:
    """Why no window can open here (Linux without a display), or None."""
    if not sys.platform.startswith("linux"):
        return None
    if os.environ.get("QT_QPA_PLATFORM") or os.environ.get("DISPLAY"):
        return None
    if os.environ.get("WAYLAND_DISPLAY"):
        return None
    return (
        "No display is available (neither DISPLAY nor WAYLAND_DISPLAY is set), so the "
        "console window cannot open here. Run it on a desktop session, or under Xvfb "
        "(xvfb-run queuedesk ...)."
    )


def make_application(argv: list[str] | None = None) -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    app = QApplication(argv or sys.argv[:1])
    app.setApplicationName("QueueDesk")
    app.setOrganizationName("QueueDesk")
    app.setApplicationDisplayName("QueueDesk")
    app.setWindowIcon(icon("queuedesk"))
    app.setQuitOnLastWindowClosed(False)  # the sign-in dialog closes before the window opens
    return app


__all__ = ["SignInRequest", "run", "start_console"]


async def start_console(console: Console) -> None:
    """``console.start()`` with cyclic garbage collection paused.

    A start allocates what lives as long as the console: the branch's state,
    its queues, the window's widgets. Collections during it only walk those
    objects again and again (a full one took about 60 ms with 10,000 tickets)
    and find next to nothing to free. The main window moves them out of the
    collector's way once the branch is open (see ``MainWindow.attach``).
    """
    with GuiCollector.install().paused():
        await console.start()


def run(
    server: str | None = None,
    data_dir: Path | None = None,
    sign_in: SignInRequest | None = None,
) -> int:
    problem = display_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    log_path = setup_logging()
    log.info("console starting (server %s, data dir %s)", server or "-", data_dir or "-")
    app = make_application()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    reporter = CrashReporter(log_path)
    reporter.install()
    loop.set_exception_handler(reporter.loop_handler)
    store, warning = open_credential_store()
    if warning:
        log.warning("%s", warning)
    console = Console(
        settings=ConsoleSettings.in_dir(data_dir),
        store=store,
        data_dir=data_dir or default_data_dir(),
        keyring_warning=warning,
        server=server,
        sign_in=sign_in,
    )
    console.finished.connect(app.quit)
    # Ctrl+C in the terminal (make run) closes the console like its window would:
    # Python sees the signal only between Qt events, so a timer gives it a turn.
    signal.signal(signal.SIGINT, lambda *_: app.quit())
    wakeup = QTimer()
    wakeup.timeout.connect(lambda: None)
    wakeup.start(250)
    try:
        with loop:
            loop.create_task(start_console(console))
            loop.run_forever()
            loop.run_until_complete(console.shutdown())
    finally:
        reporter.uninstall()
        log.info("console stopped")
        stop_logging()
    return 0
