"""Exponential backoff with full jitter, with a seeded random source."""

from __future__ import annotations

import random

import pytest
from tenacity import AsyncRetrying, stop_after_attempt

from sync.client.backoff import Backoff


def test_ceilings_double_up_to_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=10.0)
    assert [backoff.ceiling(a) for a in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.ceiling(10_000) == 10.0


def test_delays_are_uniform_below_the_ceiling_from_the_given_random() -> None:
    backoff = Backoff(base=1.0, cap=10.0, rng=random.Random(42))
    reference = random.Random(42)

    delays = [backoff.delay(a) for a in range(8)]

    assert delays == [reference.uniform(0.0, min(10.0, 2.0**a)) for a in range(8)]
    assert all(0.0 <= d <= backoff.ceiling(a) for a, d in enumerate(delays))
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_nonsense_settings_are_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="base"):
        Backoff(base=base, cap=cap)


def test_a_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().delay(-1)


@pytest.mark.asyncio
async def test_it_is_a_tenacity_wait_strategy() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    calls = 0

    async def always_failing() -> None:
        nonlocal calls
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(4),
            wait=Backoff(base=0.5, cap=8.0, rng=random.Random(3)),
            sleep=sleep,
            reraise=True,
        ):
            with attempt:
                calls += 1
                raise ConnectionError

    with pytest.raises(ConnectionError):
        await always_failing()

    reference = random.Random(3)
    assert calls == 4
    assert slept == [reference.uniform(0.0, 0.5 * 2**a) for a in range(3)]
