"""UUIDv7: RFC 9562 layout, strictly increasing within a process, readable timestamp."""

import itertools
import time
import uuid
from datetime import UTC, datetime

import pytest

from core import ids
from core.ids import new_id, uuid7


@pytest.fixture
def fresh_clock(monkeypatch):
    """Forget the last id made, so a test can choose timestamps; restored afterwards."""
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_last_rand", 0)


def embedded_ms(value: uuid.UUID) -> int:
    return value.int >> 80


def test_version_and_variant_bits():
    for _ in range(100):
        value = uuid7()
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert (value.int >> 76) & 0xF == 0x7
        assert (value.int >> 62) & 0b11 == 0b10


def test_new_id_is_the_canonical_string():
    text = new_id()
    assert len(text) == 36
    assert str(uuid.UUID(text)) == text
    assert uuid.UUID(text).version == 7


def test_ids_are_strictly_increasing_within_a_process():
    made = [uuid7() for _ in range(5000)]
    assert all(a < b for a, b in itertools.pairwise(made))
    texts = [str(u) for u in made]
    assert texts == sorted(texts)  # the text form sorts the same way


def test_embedded_timestamp_is_the_current_time():
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    # Ids made earlier in this process may have pushed the clock a little ahead.
    assert before <= embedded_ms(value) <= max(after, ids._last_ms)


def test_fixed_timestamp_is_embedded(fresh_clock):
    ms = int(datetime(2024, 3, 1, 9, 0, 0, 123000, tzinfo=UTC).timestamp() * 1000)
    value = uuid7(now_ms=ms)
    assert embedded_ms(value) == ms == 1_709_283_600_123
    assert str(value).startswith("018df93d-e6fb-7")  # 48 bits of ms, then the version


def test_same_millisecond_bumps_the_random_part(fresh_clock):
    first = uuid7(now_ms=1_000)
    second = uuid7(now_ms=1_000)
    assert embedded_ms(first) == embedded_ms(second) == 1_000
    random_bits = (1 << 74) - 1

    def random_part(u):
        return ((u.int >> 64) & 0xFFF) << 62 | (u.int & ((1 << 62) - 1))

    assert random_part(second) == (random_part(first) + 1) & random_bits


def test_a_clock_going_backwards_does_not_break_the_order(fresh_clock):
    late = uuid7(now_ms=5_000)
    early = uuid7(now_ms=4_000)
    assert early > late
    assert embedded_ms(early) == 5_000


def test_random_part_overflow_moves_to_the_next_millisecond(monkeypatch):
    monkeypatch.setattr(ids, "_last_ms", 7_000)
    monkeypatch.setattr(ids, "_last_rand", (1 << 74) - 1)
    value = uuid7(now_ms=7_000)
    assert embedded_ms(value) == 7_001
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_ids_from_different_milliseconds_have_fresh_random_parts(fresh_clock):
    values = [uuid7(now_ms=10_000 + i) for i in range(50)]
    assert [embedded_ms(v) for v in values] == list(range(10_000, 10_050))
    assert len({v.int & ((1 << 62) - 1) for v in values}) == 50
