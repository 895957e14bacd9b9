"""Exact sums of floats as SQL integers, so a stored sum gives ``math.fsum`` exactly.

A value is kept as the integer ``value * 2**72`` (exact for every float that is a
whole number of microseconds in seconds, like the waits and service times of
:mod:`core.kpi_facts`), split into four signed 32-bit limbs. Limbs add up in SQL
without overflow (2**31 values of 2**32 each), and :func:`total` rounds the exact
sum of the limbs once, which is what ``math.fsum`` returns for the same values.
"""

from __future__ import annotations

from collections.abc import Sequence

SCALE_BITS = 72
LIMB_BITS = 32
LIMBS = 4
_MASK = (1 << LIMB_BITS) - 1
_LIMIT = 1 << (LIMB_BITS * LIMBS)


def limbs(value: float) -> tuple[int, ...] | None:
    """The limbs of ``value``, or None when it has no exact form (then read it as is)."""
    numerator, denominator = value.as_integer_ratio()
    if (1 << SCALE_BITS) % denominator:
        return None
    scaled = numerator * ((1 << SCALE_BITS) // denominator)
    size = abs(scaled)
    if size >= _LIMIT:
        return None
    sign = -1 if scaled < 0 else 1
    return tuple(sign * ((size >> (LIMB_BITS * k)) & _MASK) for k in range(LIMBS))


def total(sums: Sequence[int]) -> float:
    """The correctly rounded sum of the values whose limbs added up to ``sums``."""
    exact = sum(int(s) << (LIMB_BITS * k) for k, s in enumerate(sums))
    return exact / (1 << SCALE_BITS)
