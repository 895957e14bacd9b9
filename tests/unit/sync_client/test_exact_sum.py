"""Sums kept as integer limbs give back exactly what math.fsum gives."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from sync.client import exact_sum

MICROSECONDS = st.integers(-(10**12), 10**12).map(lambda us: us / 10**6)


@given(st.lists(MICROSECONDS, max_size=60))
def test_the_sum_of_the_limbs_is_the_fsum_of_the_values(values: list[float]) -> None:
    sums = [0] * exact_sum.LIMBS
    for value in values:
        parts = exact_sum.limbs(value)
        assert parts is not None
        sums = [a + b for a, b in zip(sums, parts, strict=True)]
    assert exact_sum.total(sums) == math.fsum(values)


def test_tenths_add_up_as_fsum_adds_them_not_as_decimals() -> None:
    sums = [sum(p) for p in zip(*(exact_sum.limbs(v) or () for v in (0.1, 0.2)), strict=True)]
    assert exact_sum.total(sums) == math.fsum([0.1, 0.2]) == 0.30000000000000004


def test_values_without_an_exact_form_are_told() -> None:
    assert exact_sum.limbs(2.0**-80) is None  # finer than the scale
    assert exact_sum.limbs(2.0**60) is None  # beyond the limbs
    assert exact_sum.limbs(0.0) == (0, 0, 0, 0)
