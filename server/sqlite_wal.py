"""WAL checkpoints of the service's SQLite file, in a thread of their own.

In WAL mode a commit appends pages to the ``-wal`` file, and with
``synchronous=NORMAL`` does not wait for the disk. A *checkpoint* copies those
pages back into the database file and waits for the disk (fsync) twice. By
default SQLite runs one inside the commit that takes the WAL past 1,000 pages:
with a ticket's rows, events, audit row and indexes, every 40th request or so.
That commit then took 5-38 ms instead of 0.2 ms (measured under
``api_throughput``), holding the writer's turn all along, and on the event loop,
where the ticket routes run on SQLite, every request in flight waited for it.

The service therefore makes its connections leave checkpoints to a
:class:`WalCheckpointer`: a thread with a connection of its own runs a PASSIVE
checkpoint every :data:`CHECKPOINT_INTERVAL_S`. A passive checkpoint takes no
lock a writer or reader waits for; it copies what is committed, and SQLite
starts the WAL from the beginning again at the first write after it has copied
everything. Its file I/O runs outside the GIL.

When writers never pause (a saturated service), the checkpointer may never
find the WAL fully copied, and SQLite could not start it again. The service's
connections therefore still checkpoint themselves once the WAL holds
:data:`SAFETY_CHECKPOINT_PAGES`: by then the checkpointer has copied nearly all
of it, so that checkpoint is short, and the WAL's size stays bounded even if the
checkpointer stopped.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S: Final = 0.2
# The service's connections' wal_autocheckpoint (SQLite's default is 1,000). With
# 20,000, pushes that never paused let the WAL grow to 80 MB and sync_ingest fell
# from a ratio of 0.38-0.42 to 0.28-0.36 (two runs each); with 4,000 it stayed.
SAFETY_CHECKPOINT_PAGES: Final = 4_000
# Checkpoints in a row while writers keep adding to the WAL, before waiting again.
_ROUNDS: Final = 3


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What one ``PRAGMA wal_checkpoint(PASSIVE)`` reported."""

    busy: bool  # another checkpoint was under way
    wal_pages: int  # pages in the WAL (-1 when the database is not in WAL mode)
    copied_pages: int  # of those, copied into the database file

    @property
    def complete(self) -> bool:
        """Everything in the WAL is in the database file: the next writer starts it again."""
        return not self.busy and self.copied_pages == self.wal_pages


class WalCheckpointer:
    """Runs PASSIVE checkpoints of one SQLite file in a daemon thread, until :meth:`stop`."""

    def __init__(self, database: str, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError("the checkpoint interval must be > 0")
        self.database = database
        self.interval_s = interval_s
        self.checkpoints = 0  # run so far, for the tests and the curious
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            raise RuntimeError("the checkpointer was started already")
        self._thread = threading.Thread(
            target=self._run, name="sqlite-wal-checkpointer", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after the checkpoint under way, and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def checkpoint(self, connection: sqlite3.Connection) -> Checkpoint:
        """One passive checkpoint on ``connection``."""
        row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        return Checkpoint(bool(row[0]), int(row[1]), int(row[2]))

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(
                self.database, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error:
            log.exception("sqlite: cannot open %s to checkpoint its WAL", self.database)
            return
        try:
            while not self._stop.wait(self.interval_s):
                self._checkpoint_rounds(connection)
        finally:
            connection.close()

    def _checkpoint_rounds(self, connection: sqlite3.Connection) -> None:
        for _ in range(_ROUNDS):
            try:
                done = self.checkpoint(connection)
            except sqlite3.Error:  # e.g. a disk full: the writers' own checkpoints remain
                log.warning("sqlite: a WAL checkpoint failed; retrying", exc_info=True)
                return
            if done.complete or done.wal_pages < 0 or self._stop.is_set():
                return
