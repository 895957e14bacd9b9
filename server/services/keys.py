"""The access-token signing keys: stored in the SigningKey table, held in memory per process.

The table holds each private key as an unencrypted PKCS#8 PEM. Anyone who can
read it can sign access tokens for every tenant, so protect the table, and every
backup or dump of the database, like any other secret. Encrypting the keys at
rest under a key kept outside the database is future work.

Rotation (``queuedesk-server keys rotate``) writes a new active key and marks
the old one retired; retired keys keep verifying until every token they signed
has expired. Running servers need no restart: :class:`KeyRingSource` reloads
the ring every few seconds, and at once (rate-limited) when a token names a
kid it does not know.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.db import session_scope
from server.models import SigningKey as SigningKeyRow
from server.security._clock import require_aware, utc_now
from server.security.signing_keys import (
    MAX_ACCESS_TTL_S,
    MAX_LEEWAY_S,
    KeyRing,
    SigningKey,
    from_private_pem,
    generate_signing_key,
    public_jwk,
    to_private_pem,
)
from server.security.tokens import VerifiedTokens

ALGORITHM: Final = "EdDSA"
# How long a retired key keeps verifying: the longest token life plus leeway.
RETENTION: Final = timedelta(seconds=MAX_ACCESS_TTL_S + MAX_LEEWAY_S)
# Below the verifier's 30 s leeway for "signed after its key was retired", so a
# server signing with a key retired elsewhere switches before its tokens fail.
REFRESH_INTERVAL_S: Final = 10.0
# An unknown kid costs at most one database read per this many seconds, however
# many made-up kids arrive.
MIN_RELOAD_INTERVAL_S: Final = 2.0


def _to_key(row: SigningKeyRow, retired_at: datetime | None) -> SigningKey:
    return from_private_pem(
        row.private_key_pem.encode("ascii"), created_at=row.created_at, retired_at=retired_at
    )


def load_keyring(session: Session, *, now: datetime | None = None) -> KeyRing | None:
    """The ring stored in the table, or None when no key may sign.

    Should two servers have created a first key at the same moment, the newest
    unretired key signs and the others are treated as retired from its birth.
    """
    now = require_aware(now or utc_now(), "now")
    rows = session.scalars(
        select(SigningKeyRow).order_by(SigningKeyRow.created_at.desc(), SigningKeyRow.kid)
    ).all()
    live = [row for row in rows if row.expires_at is None or row.expires_at > now]
    unretired = [row for row in live if row.retired_at is None]
    if not unretired:
        return None
    active_row = unretired[0]
    retired = [
        _to_key(row, row.retired_at or active_row.created_at)
        for row in live
        if row is not active_row
    ]
    return KeyRing(_to_key(active_row, None), retired)


def _row_for(key: SigningKey) -> SigningKeyRow:
    return SigningKeyRow(
        kid=key.kid,
        algorithm=ALGORITHM,
        private_key_pem=to_private_pem(key).decode("ascii"),
        public_jwk=public_jwk(key),
        created_at=key.created_at,
    )


def ensure_keyring(session: Session, *, now: datetime | None = None) -> KeyRing:
    """The stored ring; a first key is generated and stored when there is none."""
    ring = load_keyring(session, now=now)
    if ring is not None:
        return ring
    key = generate_signing_key(now)
    session.add(_row_for(key))
    session.flush()
    return KeyRing(key)


def rotate_keys(session: Session, *, now: datetime | None = None) -> SigningKey:
    """Store a new active key, retire the current one, drop keys past retention."""
    now = require_aware(now or utc_now(), "now")
    ring = ensure_keyring(session, now=now)
    new = ring.rotate(now)
    kept = {key.kid: key for key in ring.keys}
    for row in session.scalars(select(SigningKeyRow)):
        key = kept.get(row.kid)
        if key is None:
            session.delete(row)
        elif key.retired_at is not None and row.retired_at is None:
            row.retired_at = key.retired_at
            row.expires_at = key.retired_at + RETENTION
    session.add(_row_for(new))
    session.flush()
    return new


class KeyRingSource:
    """The ring one server process signs and verifies with, kept in step with the table.

    Thread-safe: request handlers run on a thread pool. :meth:`fresh_ring` never
    waits, not even for the lock a reload holds while it reads the table: the event
    loop calls it, and on SQLite a reload waits in line for the writer's turn
    behind requests that only the event loop can run.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        refresh_interval_s: float = REFRESH_INTERVAL_S,
        min_reload_interval_s: float = MIN_RELOAD_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresh_interval_s = refresh_interval_s
        self.min_reload_interval_s = min_reload_interval_s
        self._factory = session_factory
        self._clock = clock
        self._lock = threading.Lock()
        # (ring, monotonic time of its load), replaced in one assignment under _lock
        # and read without it.
        self._loaded: tuple[KeyRing, float] | None = None
        self.verified = VerifiedTokens()  # bearer tokens this process has checked

    def _load(self) -> KeyRing:
        # Called with the lock held, so concurrent requests wait for one load.
        with session_scope(self._factory) as session:
            ring = ensure_keyring(session)
        self._loaded = (ring, self._clock())
        return ring

    def ring(self) -> KeyRing:
        """The current ring, reloaded when older than ``refresh_interval_s``."""
        with self._lock:
            return self._younger_than(self.refresh_interval_s) or self._load()

    def fresh_ring(self) -> KeyRing | None:
        """The ring in memory if it needs no reload now; None when :meth:`ring` would read.

        For the event loop, which must not wait on the database.
        """
        return self._younger_than(self.refresh_interval_s)

    def reload_for(self, kid: str) -> KeyRing | None:
        """Reload because a token names ``kid``; the new ring if it knows the kid.

        Rate-limited: within ``min_reload_interval_s`` of the last load nothing
        is read and the answer comes from the ring in memory.
        """
        with self._lock:
            ring = self._younger_than(self.min_reload_interval_s) or self._load()
        return ring if ring.verification_key(kid) is not None else None

    def _younger_than(self, interval_s: float) -> KeyRing | None:
        """The ring in memory if it was loaded less than ``interval_s`` ago."""
        loaded = self._loaded
        if loaded is None or self._clock() - loaded[1] >= interval_s:
            return None
        return loaded[0]
