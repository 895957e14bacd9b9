"""Identifiers: time-ordered UUIDv7 (RFC 9562) for tickets, events and rows.

Python 3.11 has no ``uuid.uuid7``; this is the RFC's layout: 48 bits of Unix
milliseconds, version 7, 74 random bits. Ids made in one process are strictly
increasing even within one millisecond (the random part is bumped), which keeps
B-tree inserts at the right end of an index.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_RAND_BITS = 74
_RAND_MASK = (1 << _RAND_BITS) - 1


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A new UUIDv7; ``now_ms`` fixes the timestamp (tests, replays)."""
    global _last_ms, _last_rand
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            rand = (_last_rand + 1) & _RAND_MASK
            if rand == 0:  # 2**74 ids in one millisecond: move to the next one
                ms += 1
                rand = int.from_bytes(os.urandom(10)) & _RAND_MASK
        else:
            rand = int.from_bytes(os.urandom(10)) & _RAND_MASK
        _last_ms, _last_rand = ms, rand
    rand_a = rand >> 62  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def new_id() -> str:
    """A new UUIDv7 as its canonical 36-character string."""
    return str(uuid7())
