"""Fixtures for the core tests; the builders themselves live in ``builders.py``."""

import pytest

from tests.unit.core.builders import Desk


@pytest.fixture
def desk() -> Desk:
    """A fresh branch (three services, three closed counters) at 2024-03-01 10:00 Berlin."""
    return Desk()
