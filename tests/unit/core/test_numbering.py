"""Ticket numbering from leased blocks: no number is ever handed out twice."""

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import DomainError, InvalidValue
from core.numbering import (
    FALLBACK_FLOOR,
    LEASE_CEILING,
    MAX_DEVICE_SLOTS,
    NumberBlock,
    NumberPool,
    fallback_numbers,
    next_block,
)
from core.values import MAX_TICKET_NUMBER, TicketNumber

DAY = date(2026, 11, 25)


def test_blocks_are_allocated_in_ascending_order_without_overlap():
    first = next_block([], "A", DAY, size=50)
    second = next_block([first], "A", DAY, size=50)
    assert (first.first, first.last) == (1, 50)
    assert (second.first, second.last) == (51, 100)


def test_other_prefixes_and_days_do_not_consume_numbers():
    taken = [NumberBlock("B", DAY, 1, 500), NumberBlock("A", date(2026, 11, 24), 1, 900)]
    block = next_block(taken, "A", DAY, size=10)
    assert (block.first, block.last) == (1, 10)


def test_last_block_is_shortened_then_the_day_is_exhausted():
    taken = [NumberBlock("A", DAY, 1, LEASE_CEILING - 5)]
    block = next_block(taken, "A", DAY, size=50)
    assert (block.first, block.last) == (LEASE_CEILING - 4, LEASE_CEILING)
    with pytest.raises(DomainError, match=r"All 4999 numbers of prefix A on 2026-11-25"):
        next_block([*taken, block], "A", DAY)


def test_fallback_zone_is_never_leased_and_slots_never_share_a_number():
    assert LEASE_CEILING < FALLBACK_FLOOR
    seen: set[int] = set()
    for slot in range(MAX_DEVICE_SLOTS):
        numbers = set(fallback_numbers(slot))
        assert numbers, slot
        assert min(numbers) >= FALLBACK_FLOOR
        assert max(numbers) <= MAX_TICKET_NUMBER
        assert not numbers & seen, slot
        seen |= numbers
    assert len(fallback_numbers(0)) == 100
    for bad in (-1, MAX_DEVICE_SLOTS):
        with pytest.raises(InvalidValue, match="slot"):
            fallback_numbers(bad)


@pytest.mark.parametrize(
    ("prefix", "first", "last"), [("a", 1, 2), ("A", 0, 5), ("A", 5, 4), ("A", 1, 10000)]
)
def test_invalid_blocks_are_rejected(prefix, first, last):
    with pytest.raises(InvalidValue):
        NumberBlock(prefix, DAY, first, last)


def test_block_size_must_be_positive():
    with pytest.raises(InvalidValue, match="at least one number"):
        next_block([], "A", DAY, size=0)


def test_pool_takes_numbers_in_order_across_blocks_and_then_runs_out():
    pool = NumberPool()
    pool.add(NumberBlock("A", DAY, 51, 52))
    pool.add(NumberBlock("A", DAY, 1, 2))
    taken = [pool.take("A", DAY) for _ in range(4)]
    assert [str(t) for t in taken] == ["A001", "A002", "A051", "A052"]
    assert pool.take("A", DAY) is None
    assert pool.take("B", DAY) is None
    assert pool.remaining("A", DAY) == 0


def test_pool_survives_a_snapshot_and_keeps_its_progress():
    pool = NumberPool()
    block = NumberBlock("A", DAY, 1, 10)
    pool.add(block)
    pool.take("A", DAY)
    restored = NumberPool.restore(pool.snapshot())
    assert restored.take("A", DAY) == TicketNumber("A", 2)
    restored.add(block)  # the same lease delivered again must not rewind
    assert restored.take("A", DAY) == TicketNumber("A", 3)
    assert restored.remaining("A", DAY) == 7


def test_pool_forgets_past_days():
    pool = NumberPool()
    pool.add(NumberBlock("A", date(2026, 11, 24), 1, 10))
    pool.add(NumberBlock("A", DAY, 1, 10))
    pool.drop_before(DAY)
    assert pool.remaining("A", date(2026, 11, 24)) == 0
    assert pool.remaining("A", DAY) == 10


def test_pool_rejects_a_cursor_outside_its_block():
    with pytest.raises(InvalidValue, match=r"outside 1\.\.10"):
        NumberPool().add(NumberBlock("A", DAY, 1, 10), next_number=12)


@given(st.lists(st.integers(min_value=1, max_value=120), min_size=2, max_size=8))
def test_devices_leasing_blocks_never_issue_the_same_number(sizes):
    """Several devices lease blocks in turn and issue everything: all numbers differ."""
    leased: list[NumberBlock] = []
    pools = [NumberPool() for _ in sizes]
    for pool, size in zip(pools, sizes, strict=True):
        block = next_block(leased, "A", DAY, size=size)
        leased.append(block)
        pool.add(block)
    issued = []
    for pool in pools:
        while (number := pool.take("A", DAY)) is not None:
            issued.append(number)
    assert len(issued) == len(set(issued)) == sum(sizes)
