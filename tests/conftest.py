"""Settings every test shares: Qt runs offscreen, nothing touches the real keyring."""

from __future__ import annotations

import os
from collections.abc import Iterator

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")

import keyring
import pytest

from sync.client.credentials import InMemoryKeyring


@pytest.fixture
def memory_keyring() -> Iterator[InMemoryKeyring]:
    """Make an :class:`InMemoryKeyring` python-keyring's backend for the test."""
    previous = keyring.get_keyring()
    backend = InMemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)
