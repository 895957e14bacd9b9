"""The console's preferences, kept with QSettings in an INI file. Never a secret.

What is kept: the server address, tenant and username of the last sign-in and
whether to remember it, the last branch and counter, notification preferences,
the theme, and the offline-unlock allowance. Passwords and tokens live only in
the OS keyring (:mod:`sync.client.credentials`), so this file is safe to copy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from PySide6.QtCore import QSettings

from sync.client.credentials import MAX_OFFLINE_AGE

SETTINGS_FILE = "console.ini"


@dataclass
class Preferences:
    server_url: str = ""
    tenant: str = ""
    username: str = ""
    remember: bool = True
    branch_id: str = ""
    counter_id: str = ""
    theme: str = "light"
    notify_desktop: bool = True  # tray notifications or in-app toasts
    notify_sound: bool = False
    notify_min_severity: str = "warning"  # info | warning | error
    offline_max_hours: int = int(MAX_OFFLINE_AGE.total_seconds() // 3600)
    keyring_notice_shown: bool = False


class ConsoleSettings:
    """Typed access to one QSettings INI file (the platform's, or one under ``data_dir``)."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            self._qs = QSettings(
                QSettings.Format.IniFormat, QSettings.Scope.UserScope, "QueueDesk", "console"
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._qs = QSettings(str(path), QSettings.Format.IniFormat)

    @classmethod
    def in_dir(cls, data_dir: Path | None) -> ConsoleSettings:
        return cls(data_dir / SETTINGS_FILE if data_dir is not None else None)

    @property
    def path(self) -> Path:
        return Path(self._qs.fileName())

    def load(self) -> Preferences:
        prefs = Preferences()
        for f in fields(Preferences):
            default = getattr(prefs, f.name)
            raw = self._qs.value(f.name, default)
            setattr(prefs, f.name, _coerce(raw, default))
        return prefs

    def save(self, prefs: Preferences) -> None:
        for f in fields(Preferences):
            self._qs.setValue(f.name, getattr(prefs, f.name))
        self._qs.sync()

    def update(self, **changes: object) -> Preferences:
        prefs = self.load()
        for name, value in changes.items():
            if not hasattr(prefs, name):
                raise AttributeError(f"no preference named {name!r}")
            setattr(prefs, name, value)
        self.save(prefs)
        return prefs


def _coerce(raw: object, default: object) -> object:
    """INI files give strings back; turn them into the default's type."""
    if isinstance(default, bool):
        if isinstance(raw, str):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return bool(raw)
    if isinstance(default, int):
        try:
            return int(str(raw))
        except ValueError:
            return default
    return "" if raw is None else str(raw)
