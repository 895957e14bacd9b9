"""What a console's start imports, and in which order (a fresh interpreter each)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
import desktop.app
names = list(sys.modules)  # in the order their imports began
import core.events as ev
print(json.dumps({
    "order": {n: names.index(n) for n in ("sqlalchemy", "pydantic", "httpx", "core.events",
                                           "sync.client.cache", "PySide6.QtCore", "qasync")},
    "built": [t.__name__ for t in ev.EVENT_TYPES.values() if t.__pydantic_complete__],
    "httpx_cli": "click" in sys.modules or "rich" in sys.modules,
}))
"""


def imported() -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_non_qt_half_is_imported_before_pyside6_and_no_validator_is_built():
    # PySide6 reads the source of every module imported after it (for __feature__):
    # the console imports SQLAlchemy, pydantic, httpx and its core before it, builds
    # no event validator until one is used, and never loads httpx's command line.
    got = imported()
    order = got["order"]
    qt = order["PySide6.QtCore"]
    for name in ("sqlalchemy", "pydantic", "httpx", "core.events", "sync.client.cache"):
        assert order[name] < qt, f"{name} is imported after PySide6"
    assert qt < order["qasync"], "qasync must find PySide6 already imported"
    assert got["built"] == []
    assert got["httpx_cli"] is False
