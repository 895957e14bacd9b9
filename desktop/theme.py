"""Icons and themes from the ``resources`` package, loaded with :mod:`importlib.resources`.

Nothing here knows a file path: the files may sit in a wheel, a PyInstaller bundle
or a source checkout, and :func:`importlib.resources.files` finds them in each.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Literal

from PySide6.QtCore import QByteArray
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QApplication

Theme = Literal["light", "dark"]
THEMES: tuple[Theme, ...] = ("light", "dark")


def resource_bytes(*parts: str) -> bytes:
    """The bytes of a file under the ``resources`` package, e.g. ``("icons", "start.svg")``."""
    node = files("resources")
    for part in parts:
        node = node / part
    return node.read_bytes()


@cache
def icon(name: str) -> QIcon:
    """The SVG icon ``resources/icons/<name>.svg`` (an empty icon if it is missing)."""
    try:
        data = resource_bytes("icons", f"{name}.svg")
    except FileNotFoundError:
        return QIcon()
    pixmap = QPixmap()
    pixmap.loadFromData(QByteArray(data), "SVG")
    result = QIcon()
    for size in (16, 24, 32, 64):
        result.addPixmap(pixmap.scaled(size, size))
    return result


def stylesheet(theme: Theme) -> str:
    return resource_bytes("themes", f"{theme}.qss").decode("utf-8")


def apply_theme(app: QApplication, theme: str) -> Theme:
    """Style the whole application; an unknown name falls back to the light theme."""
    chosen: Theme = "dark" if theme == "dark" else "light"
    app.setStyleSheet(stylesheet(chosen))
    return chosen
