"""The console's life: sign in, open the branch, work, sign out, close.

:class:`Console` owns the long-lived objects (preferences, the credential store,
the :class:`~desktop.session.Authenticator`) and swaps the short-lived ones: the
sign-in dialog, the main window and the branch's :class:`~desktop.workspace.Workspace`
with its sync thread. Everything here runs on the UI thread's qasync loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication
from qasync import asyncSlot

from desktop.bridge import SyncBridge
from desktop.first_paint import AfterFirstPaint
from desktop.gui_gc import GuiCollector
from desktop.main_window import MainWindow
from desktop.session import Authenticator, SignedIn, SignInFailed
from desktop.settings import ConsoleSettings, Preferences
from desktop.settings_dialog import SettingsDialog
from desktop.signin_dialog import SignInDialog
from desktop.theme import apply_theme
from desktop.workspace import Workspace
from sync.client.credentials import CredentialStore
from sync.client.engine import EngineSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SignInRequest:
    """Sign in at start without asking (``queuedesk --password-stdin``, ``make run``)."""

    server: str
    tenant: str
    username: str
    password: str = field(repr=False)


class Console(QObject):
    """See the module docstring. Call :meth:`start` once the event loop runs."""

    window_shown = Signal(object)  # MainWindow
    finished = Signal()  # the user closed the console

    def __init__(
        self,
        *,
        settings: ConsoleSettings,
        store: CredentialStore,
        data_dir: Path,
        keyring_warning: str | None = None,
        server: str | None = None,
        engine_settings: EngineSettings | None = None,
        sign_in: SignInRequest | None = None,
    ) -> None:
        super().__init__()
        # Before the sync thread exists: from now on it never runs a collection.
        GuiCollector.install()
        self._sign_in_request = sign_in
        self.settings = settings
        self.prefs = settings.load()
        if server:
            self.prefs.server_url = server
        self.data_dir = data_dir
        self.keyring_warning = keyring_warning
        self._keyring_told = False
        self.engine_settings = engine_settings
        self.auth = Authenticator(
            store, max_offline_age=timedelta(hours=max(1, self.prefs.offline_max_hours))
        )
        self.auth.on_change = self._back_online
        self.dialog: SignInDialog | None = None
        self.window: MainWindow | None = None
        self.workspace: Workspace | None = None
        self.bridge: SyncBridge | None = None
        self.sync_start: AfterFirstPaint | None = None  # the open branch's, until it starts
        self.settings_dialog: SettingsDialog | None = None

    # -- starting and signing in ---------------------------------------------------------

    async def start(self) -> None:
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, self.prefs.theme)
        prefs = self.prefs
        request, self._sign_in_request = self._sign_in_request, None
        if request is not None:
            try:
                signed = await self.auth.sign_in(
                    request.server,
                    request.tenant,
                    request.username,
                    request.password,
                    remember=False,
                )
            except SignInFailed as exc:
                self.prefs.tenant, self.prefs.username = request.tenant, request.username
                self.show_sign_in(str(exc))
                return
            self.prefs = self.settings.update(
                server_url=signed.server_url, tenant=signed.tenant, username=signed.username
            )
            self.enter(signed)
            return
        if prefs.remember and self.auth.store.persistent:
            try:
                resumed = await self.auth.resume(prefs.server_url, prefs.tenant, prefs.username)
            except SignInFailed as exc:
                self.show_sign_in(str(exc))
                return
            if resumed is not None:
                self.enter(resumed)
                return
        self.show_sign_in()

    def show_sign_in(self, message: str | None = None) -> SignInDialog:
        notice = None if self._keyring_told else self.keyring_warning
        dialog = SignInDialog(self.auth, self.prefs, keyring_notice=notice, message=message)
        dialog.signed_in.connect(self._signed_in_from_dialog)
        dialog.rejected.connect(self._sign_in_cancelled)
        self.dialog = dialog
        dialog.show()
        return dialog

    def _signed_in_from_dialog(self, signed: SignedIn) -> None:
        dialog = self.dialog
        remember = dialog.remember.isChecked() if dialog is not None else self.prefs.remember
        self.dialog = None
        if self.window is not None:  # signed out of the server while working: back again
            self.window.set_signed_in(signed)
            self.prefs = self.settings.update(remember=remember)
            if self.workspace is not None:
                self.workspace.signed_in = signed
                if self.workspace.sync is not None:
                    self.workspace.sync.engine.resume()
            return
        self.prefs = self.settings.update(
            server_url=signed.server_url,
            tenant=signed.tenant,
            username=signed.username,
            remember=remember,
        )
        self.enter(signed)

    def _sign_in_cancelled(self) -> None:
        self.dialog = None
        if self.window is None:
            self.finished.emit()

    # -- working --------------------------------------------------------------------------

    def enter(self, signed: SignedIn) -> MainWindow:
        window = MainWindow(signed)
        self.window = window
        window.branch_chosen.connect(self.open_branch)
        window.counter_chosen.connect(lambda c: self._remember(counter_id=c))
        window.sign_out_requested.connect(self.sign_out)
        window.settings_requested.connect(self.open_settings)
        window.sign_in_requested.connect(self._sign_in_again)
        window.closed.connect(lambda: self._window_closed(window))
        window.notifier.enabled = self.prefs.notify_desktop
        window.notifier.min_severity = self.prefs.notify_min_severity
        window.branch_comparison = self.auth.branch_comparison
        branches = [window.branch.itemData(i) for i in range(window.branch.count())]
        branch_id = self.prefs.branch_id if self.prefs.branch_id in branches else None
        branch_id = branch_id or (branches[0] if branches else None)
        window.show()
        if branch_id:
            self.open_branch(branch_id)
        else:
            window.say("You may not work at any branch; ask your administrator.")
        if self.keyring_warning and not self._keyring_told:
            self._keyring_told = True
            window.add_notice("Sign-in not remembered", self.keyring_warning, "warning")
        if signed.offline:
            window.add_notice(
                "Working offline",
                "The server could not be reached; you are signed in with the permissions "
                "of your last online sign-in. Changes are kept and sent when it is back.",
                "warning",
            )
        self.window_shown.emit(window)
        return window

    def open_branch(self, branch_id: str) -> None:
        window = self.window
        if window is None:
            return
        self._close_workspace()
        signed: SignedIn = self.auth.signed_in or window.signed_in
        bridge = SyncBridge()
        try:
            workspace = Workspace.open(
                self.auth,
                signed,
                branch_id,
                self.data_dir,
                bridge,
                start=False,
                engine_settings=self.engine_settings,
            )
        except Exception as exc:
            log.exception("cannot open branch %s", branch_id)
            window.say(f"This branch cannot be opened here: {exc}")
            return
        self.workspace, self.bridge = workspace, bridge
        counter = self.prefs.counter_id if branch_id == self.prefs.branch_id else ""
        self._remember(branch_id=branch_id)
        window.attach(workspace, bridge, counter)
        # The queues are on screen from the cache; syncing starts once they are painted
        # (a first paint that shared the interpreter with the sync thread's first work
        # took 110-140 ms instead of 35-65 ms with 10,000 tickets).
        self.sync_start = AfterFirstPaint(window, lambda: self._start_sync(window, workspace))

    def _start_sync(self, window: MainWindow, workspace: Workspace) -> None:
        if self.workspace is not workspace:  # another branch since, or signed out
            return
        try:
            workspace.start_sync()
        except Exception as exc:
            log.exception("cannot start syncing branch %s", workspace.branch_id)
            window.say(f"This branch works offline only: syncing could not start ({exc}).")

    def _window_closed(self, window: MainWindow) -> None:
        if self.window is window:  # closed by the user, not replaced by the console
            self.finished.emit()

    def _remember(self, **changes: object) -> None:
        self.prefs = self.settings.update(**changes)

    def _back_online(self, signed: SignedIn) -> None:
        """An offline unlock became an online session (remembered sign-in resumed)."""
        if self.window is not None:
            self.window.set_signed_in(signed)
        if self.workspace is not None:
            self.workspace.signed_in = signed

    def _sign_in_again(self) -> None:
        if self.dialog is None:
            self.show_sign_in("Your session with the server ended. Sign in to keep syncing.")

    def open_settings(self) -> None:
        counters = self.workspace.cache.counters() if self.workspace else []
        dialog = SettingsDialog(self.prefs, counters, self.window)
        self.settings_dialog = dialog

        def save() -> None:
            self.apply_preferences(dialog.chosen())

        dialog.accepted.connect(save)
        dialog.finished.connect(lambda _r: setattr(self, "settings_dialog", None))
        dialog.open()

    def apply_preferences(self, prefs: Preferences) -> None:
        self.settings.save(prefs)
        counter_changed = prefs.counter_id != self.prefs.counter_id
        self.prefs = prefs
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, prefs.theme)
        self.auth.max_offline_age = timedelta(hours=max(1, prefs.offline_max_hours))
        window = self.window
        if window is not None:
            window.notifier.enabled = prefs.notify_desktop
            window.notifier.min_severity = prefs.notify_min_severity
            if counter_changed and self.workspace is not None:
                self.workspace.counter_id = prefs.counter_id or None
                window.refresh()

    # -- ending -----------------------------------------------------------------------------

    @asyncSlot()
    async def sign_out(self) -> None:
        self._close_window()
        self._close_workspace()
        await self.auth.sign_out()
        self.prefs = dataclasses.replace(self.settings.load())
        self.show_sign_in()

    def _close_window(self) -> None:
        window, self.window = self.window, None
        if window is not None:
            window.stop_timers()
            window.close()
            window.deleteLater()

    def _close_workspace(self) -> None:
        workspace, self.workspace, self.bridge = self.workspace, None, None
        if workspace is not None:
            workspace.close()

    async def shutdown(self) -> None:
        """Stop syncing and close the network client; the cache keeps everything."""
        if self.dialog is not None:
            self.dialog.close()
            self.dialog = None
        self._close_window()
        self._close_workspace()
        await self.auth.close()
        await asyncio.sleep(0)
