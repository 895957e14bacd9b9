"""The console's log file and its last line of defence against unexpected errors.

The log rotates in the platform log directory (platformdirs ``user_log_dir``).
An exception that reaches the event loop or ``sys.excepthook`` is logged there
and shown in a dialog that names the log file; the console keeps running.

Secrets never reach the log: no code logs a password or token; the file takes
INFO and above only, because libraries' DEBUG lines carry call arguments (qasync
logs every executor call with its arguments, a password among them); and
:class:`RedactingFormatter` masks anything that looks like a bearer token or a JWT in
case a library's message carries one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
from collections.abc import Callable
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType
from typing import Any

from platformdirs import user_log_dir
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QMessageBox

APP_NAME = "QueueDesk"
LOG_FILE = "console.log"
MAX_BYTES = 2 * 1024 * 1024
BACKUPS = 5

log = logging.getLogger(__name__)

_SECRET = re.compile(
    r"(Bearer\s+)[A-Za-z0-9._~+/=-]+|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
    r"|(\"?(?:refresh_token|access_token|password)\"?\s*[:=]\s*\"?)[^\s\",}]+",
    re.IGNORECASE,
)


def _mask(match: re.Match[str]) -> str:
    prefix = match.group(1) or match.group(2) or ""
    return f"{prefix}[redacted]"


class RedactingFormatter(logging.Formatter):
    """Masks bearer tokens, JWTs and ``password=...``-like pairs in the whole line,
    tracebacks included (an exception's message may quote a request)."""

    def format(self, record: logging.LogRecord) -> str:
        return _SECRET.sub(_mask, super().format(record))


def default_log_dir() -> Path:
    return Path(user_log_dir(APP_NAME, APP_NAME))


def setup_logging(log_dir: Path | None = None) -> Path:
    """Log to a rotating file in ``log_dir`` (default: the platform's); returns its path."""
    folder = log_dir or default_log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOG_FILE
    stop_logging()
    root = logging.getLogger()
    handler = RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handler._queuedesk = True  # type: ignore[attr-defined]
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    )
    handler.setLevel(logging.INFO)  # never DEBUG: see the module docstring
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return path


def stop_logging() -> None:
    """Remove the console's file handler (tests, and a clean shutdown)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_queuedesk", False):
            root.removeHandler(handler)
            handler.close()


class CrashReporter(QObject):
    """Logs unexpected exceptions from any thread and shows them on the UI thread."""

    _report = Signal(str, str)

    def __init__(self, log_path: Path, show_dialog: bool = True) -> None:
        super().__init__()
        self.log_path = log_path
        self.show_dialog = show_dialog
        self.reported: list[str] = []  # summaries, for tests and the status line
        self.dialog: QMessageBox | None = None  # the one shown last (kept alive here)
        self._previous: Callable[..., Any] | None = None
        self._previous_thread: Callable[..., Any] | None = None
        self._report.connect(self._show, Qt.ConnectionType.QueuedConnection)

    def install(self) -> None:
        self._previous, sys.excepthook = sys.excepthook, self.excepthook
        self._previous_thread, threading.excepthook = threading.excepthook, self._thread_hook

    def uninstall(self) -> None:
        if self._previous is not None:
            sys.excepthook = self._previous
        if self._previous_thread is not None:
            threading.excepthook = self._previous_thread

    def excepthook(
        self,
        kind: type[BaseException],
        value: BaseException,
        traceback: TracebackType | None,
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            QApplication.quit()
            return
        log.error("unexpected error", exc_info=(kind, value, traceback))
        summary = f"{kind.__name__}: {value}"
        self.reported.append(summary)
        self._report.emit(summary, str(self.log_path))

    def _thread_hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            self.excepthook(args.exc_type, args.exc_value, args.exc_traceback)

    def loop_handler(self, _loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """For ``loop.set_exception_handler``: errors in tasks and callbacks."""
        error = context.get("exception")
        if isinstance(error, BaseException):
            self.excepthook(type(error), error, error.__traceback__)
        else:
            log.error("event loop: %s", context.get("message"))

    def _show(self, summary: str, log_path: str) -> None:
        if not self.show_dialog:
            return
        box = QMessageBox(QApplication.activeWindow())
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("QueueDesk: unexpected error")
        box.setText("Something went wrong. The console keeps running; your work is saved.")
        box.setInformativeText(
            f"{summary}\n\nDetails are in the log file:\n{log_path}\n"
            "Please send it to your administrator."
        )
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setObjectName("crashDialog")
        self.dialog = box
        box.open()
