"""Login throttling: delay growth, the hourly ceiling, expiry and reset."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.security.throttle import (
    FREE_FAILURES,
    MAX_DELAY_S,
    MAX_FAILURES_PER_HOUR,
    ThrottleState,
    check,
    delay_for,
    register_failure,
    register_success,
    throttle_key,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def fail(times: int, start: datetime = NOW, gap: timedelta = timedelta(0)) -> ThrottleState:
    state = ThrottleState()
    for i in range(times):
        state = register_failure(state, start + gap * i)
    return state


# --- delays ---------------------------------------------------------------------------


def test_first_failures_are_free() -> None:
    assert [delay_for(n) for n in range(FREE_FAILURES + 1)] == [0.0, 0.0, 0.0, 0.0]


def test_delay_doubles_then_caps_at_fifteen_minutes() -> None:
    assert [delay_for(n) for n in range(4, 10)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert delay_for(14) == 900.0
    assert delay_for(10_000) == MAX_DELAY_S == 900.0


@given(st.integers(min_value=0, max_value=10_000))
def test_delay_never_shrinks_as_failures_grow(failures: int) -> None:
    assert 0 <= delay_for(failures) <= delay_for(failures + 1) <= MAX_DELAY_S


# --- state ----------------------------------------------------------------------------


def test_three_failures_do_not_lock() -> None:
    state = fail(3)
    assert state.failures == 3
    assert state.locked_until is None
    assert check(state, NOW) is None


def test_fourth_failure_locks_for_a_second() -> None:
    state = fail(4)
    assert state.locked_until == NOW + timedelta(seconds=1)
    assert check(state, NOW) == 1
    assert check(state, NOW + timedelta(seconds=1)) is None


def test_retry_after_rounds_up() -> None:
    state = fail(6)  # 4 s
    assert check(state, NOW + timedelta(seconds=2, milliseconds=100)) == 2
    assert check(state, NOW + timedelta(seconds=3, milliseconds=999)) == 1


def test_state_records_the_first_and_last_failure() -> None:
    state = fail(5, gap=timedelta(minutes=1))
    assert state.first_failure_at == NOW
    assert state.last_failure_at == NOW + timedelta(minutes=4)


def test_failures_expire_after_an_hour_without_one() -> None:
    state = fail(8)
    later = NOW + HOUR
    assert check(state, later) is None
    state = register_failure(state, later)
    assert state.failures == 1
    assert state.first_failure_at == later
    assert state.locked_until is None


def test_failures_within_the_hour_keep_counting() -> None:
    state = fail(8)
    state = register_failure(state, NOW + HOUR - timedelta(seconds=1))
    assert state.failures == 9


def test_success_resets() -> None:
    assert register_success() == ThrottleState()
    assert check(register_success(), NOW) is None


def test_naive_time_is_an_error() -> None:
    with pytest.raises(ValueError, match="timezone"):
        register_failure(ThrottleState(), NOW.replace(tzinfo=None))


def _most_failures_in_any_hour(times: list[datetime]) -> int:
    window: deque[datetime] = deque()
    most = 0
    for at in times:
        window.append(at)
        while at - window[0] >= HOUR:
            window.popleft()
        most = max(most, len(window))
    return most


def _attack(wait_after_lock: timedelta, duration: timedelta) -> list[datetime]:
    """An attacker retrying as soon as allowed (plus ``wait_after_lock``)."""
    state, now, times = ThrottleState(), NOW, []
    while now < NOW + duration:
        retry_after = check(state, now)
        if retry_after is not None:
            now += timedelta(seconds=retry_after) + wait_after_lock
            continue
        state = register_failure(state, now)
        times.append(now)
        now += timedelta(milliseconds=1)
    return times


@pytest.mark.parametrize("wait", [timedelta(0), timedelta(minutes=20), HOUR])
def test_no_more_than_100_failures_per_hour_per_key(wait: timedelta) -> None:
    times = _attack(wait, timedelta(hours=24))
    assert times
    assert _most_failures_in_any_hour(times) <= MAX_FAILURES_PER_HOUR
    # The real ceiling is far lower.
    assert _most_failures_in_any_hour(times) <= 20


# --- key ------------------------------------------------------------------------------


def test_key_is_per_account_and_source() -> None:
    base = throttle_key(tenant="acme", username="staff1", source_ip="198.51.100.7")
    assert base == throttle_key(tenant="ACME", username="Staff1", source_ip=" 198.51.100.7 ")
    assert base != throttle_key(tenant="acme", username="staff1", source_ip="198.51.100.8")
    assert base != throttle_key(tenant="acme", username="staff2", source_ip="198.51.100.7")
    assert base != throttle_key(tenant="other", username="staff1", source_ip="198.51.100.7")


def test_key_holds_no_name_or_address() -> None:
    key = throttle_key(tenant="acme", username="staff1", source_ip="198.51.100.7")
    assert len(key) == 64
    assert "staff1" not in key
    assert "198" not in key


def test_ipv6_addresses_in_one_64_share_a_key() -> None:
    one = throttle_key(tenant="t", username="u", source_ip="2001:db8:1:2::1")
    assert one == throttle_key(tenant="t", username="u", source_ip="2001:db8:1:2:ffff::9")
    assert one != throttle_key(tenant="t", username="u", source_ip="2001:db8:1:3::1")


def test_ipv4_mapped_ipv6_is_the_ipv4_address() -> None:
    assert throttle_key(tenant="t", username="u", source_ip="::ffff:192.0.2.1") == throttle_key(
        tenant="t", username="u", source_ip="192.0.2.1"
    )


def test_key_parts_cannot_run_into_each_other() -> None:
    assert throttle_key(tenant="ab", username="c", source_ip="x") != throttle_key(
        tenant="a", username="bc", source_ip="x"
    )
