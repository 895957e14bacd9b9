"""Driving the console like a person: fill the sign-in form, press keys, click buttons."""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDialog, QPushButton
from pytestqt.qtbot import QtBot

from desktop.main_window import MainWindow
from desktop.signin_dialog import SignInDialog

WAIT_MS = 30_000


def start(console: Any, qtbot: QtBot) -> None:
    """Run ``console.start()`` on the loop and wait until it has shown something."""
    task = asyncio.ensure_future(console.start())
    qtbot.waitUntil(task.done, timeout=WAIT_MS)
    task.result()


def fill_sign_in(
    dialog: SignInDialog,
    qtbot: QtBot,
    *,
    server: str | None = None,
    tenant: str | None = None,
    username: str | None = None,
    password: str = "",
    remember: bool | None = None,
) -> None:
    for edit, value in (
        (dialog.server, server),
        (dialog.tenant, tenant),
        (dialog.username, username),
    ):
        if value is not None:
            edit.clear()
            qtbot.keyClicks(edit, value)
    dialog.password.clear()
    qtbot.keyClicks(dialog.password, password)
    if remember is not None and dialog.remember.isEnabled():
        dialog.remember.setChecked(remember)


def submit(dialog: SignInDialog, qtbot: QtBot) -> bool:
    """Click "Sign in" and wait for the attempt's end; True if it signed in."""
    with qtbot.waitSignal(dialog.attempt_finished, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(dialog.sign_in_button, Qt.MouseButton.LeftButton)
    return bool(blocker.args and blocker.args[0])


def press(window: MainWindow, qtbot: QtBot, key: Qt.Key, modifier: Any = None) -> None:
    """A key press on the main window, as staff type it (shortcuts included)."""
    if QApplication.activeWindow() is not window:  # shortcuts answer the active window only
        window.activateWindow()
        window.windowHandle().requestActivate()
        qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=WAIT_MS)
    if modifier is None:
        qtbot.keyClick(window, key)
    else:
        qtbot.keyClick(window, key, modifier)


def click(button: QPushButton, qtbot: QtBot) -> None:
    assert button.isVisible(), f"{button.text()} is hidden"
    assert button.isEnabled(), f"{button.text()} is disabled"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def accept(dialog: QDialog | None, qtbot: QtBot) -> None:
    assert dialog is not None, "no dialog is open"
    qtbot.waitExposed(dialog)
    dialog.accept()


def open_sign_in(rig: Any, why: str = "the sign-in dialog did not open") -> SignInDialog:
    """Start the console and answer the sign-in dialog it shows (``why``: if it shows none)."""
    start(rig.console, rig.qtbot)
    dialog: SignInDialog | None = rig.console.dialog
    assert dialog is not None, why
    return dialog


def sign_in_as(rig: Any, server: Any, user: str, *, remember: bool = True) -> MainWindow:
    """Start the console, sign in through the dialog, wait for the branch's counters."""
    dialog = open_sign_in(rig)
    fill_sign_in(
        dialog,
        rig.qtbot,
        server=server.url,
        tenant=server.demo.tenant,
        username=user,
        password=server.demo.passwords[user],
        remember=remember,
    )
    submit(dialog, rig.qtbot)
    window = rig.wait_window()
    rig.qtbot.waitUntil(lambda: window.counter.count() > 1, timeout=WAIT_MS)
    workspace = rig.console.workspace
    # the first round ends with leased ticket numbers and the sync time
    rig.qtbot.waitUntil(lambda: workspace.cache.last_synced_at() is not None, timeout=WAIT_MS)
    return window
