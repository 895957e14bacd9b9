"""The sign-in dialog: server, tenant, username, password and "remember me".

It awaits :meth:`desktop.session.Authenticator.sign_in` in an async slot (the
button is disabled meanwhile) and shows the failure's sentence under the form,
next to the field at fault. When the server cannot be reached, the same
password unlocks the console offline for a user who signed in here before.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)
from qasync import asyncSlot

from desktop.session import Authenticator, SignedIn, SignInFailed
from desktop.settings import Preferences
from desktop.theme import icon


class SignInDialog(QDialog):
    """Emits :attr:`signed_in` once a sign-in (online or offline unlock) succeeded."""

    signed_in = Signal(object)  # SignedIn
    attempt_finished = Signal(bool)  # each sign-in attempt, succeeded or not

    def __init__(
        self,
        auth: Authenticator,
        prefs: Preferences,
        *,
        keyring_notice: str | None = None,
        message: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._auth = auth
        self.result_session: SignedIn | None = None
        self.setWindowTitle("Sign in to QueueDesk")
        self.setWindowIcon(icon("queuedesk"))
        self.setObjectName("signInDialog")
        self.setMinimumWidth(460)

        title = QLabel("<h2>QueueDesk</h2>Sign in to your counter console.")
        title.setTextFormat(Qt.TextFormat.RichText)

        self.server = QLineEdit(prefs.server_url)
        self.server.setPlaceholderText("https://queue.example.org")
        self.tenant = QLineEdit(prefs.tenant)
        self.tenant.setPlaceholderText("your organisation, e.g. acme")
        self.username = QLineEdit(prefs.username)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.remember = QCheckBox("Remember me on this computer")
        self.remember.setChecked(prefs.remember)
        for name, edit in (
            ("server", self.server),
            ("tenant", self.tenant),
            ("username", self.username),
            ("password", self.password),
        ):
            edit.setObjectName(name)

        form = QFormLayout()
        form.addRow("&Server", self.server)
        form.addRow("&Tenant", self.tenant)
        form.addRow("&Username", self.username)
        form.addRow("&Password", self.password)
        form.addRow("", self.remember)

        self.notice = QLabel()
        self.notice.setObjectName("formNotice")
        self.notice.setWordWrap(True)
        self.notice.setVisible(False)
        if keyring_notice:
            self.remember.setChecked(False)
            self.remember.setEnabled(False)
            self.remember.setToolTip(keyring_notice)
            self.show_notice(
                f"{keyring_notice} You will need to sign in each time the console starts."
            )
        self.error = QLabel()
        self.error.setObjectName("formError")
        self.error.setWordWrap(True)
        self.error.setVisible(False)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.sign_in_button = self.buttons.addButton(
            "Sign in", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.sign_in_button.setObjectName("primaryAction")
        self.sign_in_button.setDefault(True)
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addLayout(form)
        layout.addWidget(self.notice)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        if message:
            self.show_error(message)
        first_empty = next(
            (e for e in (self.server, self.tenant, self.username) if not e.text()), self.password
        )
        first_empty.setFocus()

    def show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(True)

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def busy(self, busy: bool) -> None:
        self.sign_in_button.setEnabled(not busy)
        self.sign_in_button.setText("Signing in…" if busy else "Sign in")
        for edit in (self.server, self.tenant, self.username, self.password):
            edit.setReadOnly(busy)

    @asyncSlot()
    async def submit(self) -> None:
        if not self.sign_in_button.isEnabled():
            return
        self.busy(True)
        self.show_error("")
        try:
            session = await self._auth.sign_in(
                self.server.text(),
                self.tenant.text(),
                self.username.text(),
                self.password.text(),
                remember=self.remember.isChecked(),
            )
        except SignInFailed as exc:
            self.show_error(str(exc))
            target = {
                "server": self.server,
                "tenant": self.tenant,
                "username": self.username,
                "password": self.password,
            }.get(exc.field or "", self.password)
            target.setFocus()
            if exc.field == "password":
                self.password.selectAll()
            self.attempt_finished.emit(False)
            return
        finally:
            self.busy(False)
        self.password.clear()  # the dialog must not hold the password longer than needed
        self.result_session = session
        self.signed_in.emit(session)
        self.accept()
        self.attempt_finished.emit(True)
