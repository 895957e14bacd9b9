"""No password or token ever reaches a file: settings, caches, logs, anything under HOME."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from desktop.logs import setup_logging, stop_logging
from sync.client.credentials import InMemoryKeyring, MemoryCredentialStore
from tests.ui.conftest import WAIT_MS, ConsoleRig, DemoServer
from tests.ui.helpers import click, sign_in_as


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def assert_nowhere(secrets: list[str], roots: list[Path]) -> None:
    scanned = files_under(*roots)
    assert scanned, "nothing was written at all: the scan would prove nothing"
    for path in scanned:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"a secret reached {path}"


def test_no_token_or_password_reaches_disk(
    demo_server: DemoServer,
    memory_keyring: InMemoryKeyring,
    make_console: Callable[..., ConsoleRig],
    private_home: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    log_file = setup_logging()  # the real rotating log, in the private HOME's state dir
    request.addfinalizer(stop_logging)
    root = logging.getLogger()
    request.addfinalizer(lambda level=root.level: root.setLevel(level))
    root.setLevel(logging.DEBUG)  # the chattiest a support call could make it
    assert private_home in log_file.parents
    secrets: list[str] = [
        demo_server.demo.passwords["staff1"],
        demo_server.demo.passwords["staff2"],
    ]

    remembered = make_console(name="remembered")
    window = sign_in_as(remembered, demo_server, "staff1", remember=True)
    auth = remembered.console.auth
    assert auth.session is not None
    secrets.append(auth.session._require().access)
    secrets.append(auth.session._require().refresh)
    secrets += [value for (_s, key), value in memory_keyring.entries.items() if "refresh" in key]
    window.counter.setCurrentIndex(1)
    assert window.workspace is not None
    window.workspace.open_counter()
    remembered.qtbot.waitUntil(lambda: window.status.outbox_count == 0, timeout=WAIT_MS)
    settings_file = remembered.console.settings.path
    click(window.sign_out_button, remembered.qtbot)
    remembered.qtbot.waitUntil(lambda: remembered.console.dialog is not None, timeout=WAIT_MS)

    # without a keyring: the session lives in memory only
    store = MemoryCredentialStore()
    memory_only = make_console(name="memory-only", store=store, keyring_warning="No keyring.")
    second = sign_in_as(memory_only, demo_server, "staff2")
    assert memory_only.console.auth.session is not None
    secrets.append(memory_only.console.auth.session._require().access)
    secrets.append(memory_only.console.auth.session._require().refresh)
    assert second.workspace is not None
    for handler in logging.getLogger().handlers:
        handler.flush()

    assert settings_file.is_file()
    assert settings_file.stat().st_size > 0
    assert log_file.is_file()
    assert log_file.stat().st_size > 0
    assert_nowhere(secrets, [private_home, tmp_path / "remembered", tmp_path / "memory-only"])
