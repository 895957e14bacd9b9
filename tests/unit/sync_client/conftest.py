"""Fixtures for the sync client's unit tests: an in-memory OS keyring."""

from __future__ import annotations

from collections.abc import Iterator

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
