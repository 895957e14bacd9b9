"""Login throttling policy: how long a (account, source) pair must wait after failures.

The key is the account *and* the source address. Keyed by account alone, anyone
on the internet could lock a member of staff out by failing on purpose; keyed by
source alone, one address could try every account. With both, an attacker slows
only their own attempts on that account, and the legitimate user, signing in
from elsewhere, is not delayed. Guessing spread over many sources is beyond what
a single key can see.

A failure counter is forgotten once an hour has passed without a new failure.
A request refused by :func:`check` is answered 429 without verifying the password
and is not counted.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from server.security._clock import require_aware

FREE_FAILURES: Final = 3
BASE_DELAY_S: Final = 1.0
MAX_DELAY_S: Final = 15 * 60.0
FAILURE_WINDOW: Final = timedelta(hours=1)
# The delays below allow at most 16 failures in any hour; 100 is the promise.
MAX_FAILURES_PER_HOUR: Final = 100
_IPV6_NETWORK_BITS: Final = 64


def delay_for(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failures.

    None for the first three (typos), then 1 s doubling each time, capped at 15
    minutes.
    """
    if failures <= FREE_FAILURES:
        return 0.0
    exponent = failures - FREE_FAILURES - 1
    # Past 2**10 s the cap applies anyway; avoids computing huge powers.
    if exponent >= 10:
        return MAX_DELAY_S
    return min(BASE_DELAY_S * (1 << exponent), MAX_DELAY_S)


@dataclass(frozen=True, slots=True)
class ThrottleState:
    """Failures recorded for one key (times aware UTC)."""

    failures: int = 0
    first_failure_at: datetime | None = None
    last_failure_at: datetime | None = None
    locked_until: datetime | None = None


def _expired(state: ThrottleState, now: datetime) -> bool:
    last = state.last_failure_at
    return last is None or now - require_aware(last, "last_failure_at") >= FAILURE_WINDOW


def register_failure(state: ThrottleState, now: datetime) -> ThrottleState:
    """The state after one more failed login at ``now``."""
    now = require_aware(now, "now")
    if _expired(state, now):
        state = ThrottleState(first_failure_at=now)
    failures = state.failures + 1
    delay = delay_for(failures)
    return replace(
        state,
        failures=failures,
        last_failure_at=now,
        locked_until=now + timedelta(seconds=delay) if delay > 0 else None,
    )


def register_success() -> ThrottleState:
    """The state after a successful login: nothing remembered."""
    return ThrottleState()


def check(state: ThrottleState, now: datetime) -> int | None:
    """Whole seconds to wait before the next attempt (for Retry-After), or None."""
    now = require_aware(now, "now")
    if state.locked_until is None or _expired(state, now):
        return None
    remaining = (require_aware(state.locked_until, "locked_until") - now).total_seconds()
    return math.ceil(remaining) if remaining > 0 else None


def _source_network(source_ip: str) -> str:
    # One IPv6 host usually owns a whole /64, so a /64 counts as one source.
    try:
        address = ipaddress.ip_address(source_ip.strip())
    except ValueError:
        return source_ip.strip().lower()
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, _IPV6_NETWORK_BITS), strict=False))
    return str(address)


def throttle_key(*, tenant: str, username: str, source_ip: str) -> str:
    """Stable key for one account seen from one source.

    Hashed so the throttle store holds no user names or addresses; the length
    prefixes keep ("ab", "c") and ("a", "bc") apart.
    """
    parts = (tenant.casefold(), username.casefold(), _source_network(source_ip))
    material = "".join(f"{len(part)}:{part}" for part in parts)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()
