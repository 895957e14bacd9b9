"""Exponential backoff with full jitter, for retrying calls to the central service.

When a branch link comes back, every console of the branch retries at once; a
fixed or merely exponential schedule keeps them in lockstep and they hit the
server together. "Full jitter" (the delay is uniform between zero and the
exponential ceiling) spreads them out. The random source is injectable so tests
see exact delays from a seeded :class:`random.Random`.

A :class:`Backoff` is also a tenacity wait strategy (``wait=backoff``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol


class _RetryState(Protocol):
    attempt_number: int


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``attempt`` (0 for the first retry): uniform in
    ``[0, min(cap, base * 2**attempt)]``."""

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("need 0 < base <= cap")

    def ceiling(self, attempt: int) -> float:
        """The largest delay of ``attempt``: where the exponential meets the cap."""
        if attempt < 0:
            raise ValueError("attempt must not be negative")
        # Past 2**64 the cap has long applied; avoids building huge integers.
        return min(self.cap, self.base * (1 << min(attempt, 64)))

    def delay(self, attempt: int) -> float:
        """A jittered delay in seconds for retry ``attempt``."""
        return self.rng.uniform(0.0, self.ceiling(attempt))

    def __call__(self, retry_state: _RetryState) -> float:
        """Tenacity's wait protocol: it counts attempts from 1, so retry 0 follows attempt 1."""
        return self.delay(max(retry_state.attempt_number - 1, 0))
