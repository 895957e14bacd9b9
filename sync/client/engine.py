"""The sync engine: moves a branch cache's outbox to the service and the service's log back.

One :class:`SyncEngine` per cache, on one asyncio loop (the sync thread's, see
:mod:`sync.client.thread`). It runs three tasks:

- the *round* loop: push pending events in device order, in batches, then pull
  until the log's head (with the held reference data version, so new reference
  data comes along), then top up leased ticket numbers. It runs when the cache
  says a command committed (:meth:`SyncEngine.wake`, thread-safe), when the
  stream asks, and every ``poll_interval_s`` while the stream is down; after a
  failure it retries with exponential backoff and full jitter;
- the *stream* loop: the live SSE stream from the cache cursor; streamed events
  are folded in as they come, a poke triggers a round, and every (re)connect
  triggers one too, so a reconnect always catches up from the cursor;
- the *watchdog*: while online with a backlog, some push must make progress
  every ``stuck_after_s`` (:class:`~sync.client.connectivity.OutboxWatchdog`).

Nothing here wedges the outbox: business refusals are per-event verdicts; a
``device_seq`` gap renumbers the unsent events the way the service expects
(:meth:`LocalCache.realign`), pulls and pushes again; a batch too large (413) is
halved. A session that ends (:class:`SignedOut`) stops syncing and leaves the
cache and the outbox as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from sync.client.api import (
    ClientError,
    Heartbeat,
    Offline,
    Poke,
    Rejected,
    SeqGap,
    SignedOut,
    SyncApi,
    Throttled,
)
from sync.client.backoff import Backoff
from sync.client.cache import LocalCache
from sync.client.connectivity import (
    Alert,
    ConnectionState,
    OutboxWatchdog,
    SyncListener,
    SyncStats,
)
from sync.client.views import AppliedPull, Rejection
from sync.protocol import (
    DEFAULT_PULL_LIMIT,
    MAX_PUSH_EVENTS,
    LeaseRequest,
    PullResponse,
    PushRequest,
    StreamMessage,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Tickets whose deferred KPI facts one idle step writes (about a fifth of a second).
FACTS_CHUNK = 1000
MAX_REALIGNMENTS = 3  # per round; each one moves the unsent events to where the service wants


@dataclass(frozen=True)
class EngineSettings:
    """Tunables of a :class:`SyncEngine`; the defaults suit a branch console."""

    poll_interval_s: float = 30.0  # how often to pull while the stream is down
    idle_check_s: float = 300.0  # a round now and then even with a live stream
    stuck_after_s: float = 60.0  # online, backlog, no push progress: alert after this
    lease_min_remaining: int = 50  # top up a service's leased numbers below this
    push_batch: int = MAX_PUSH_EVENTS
    pull_limit: int = DEFAULT_PULL_LIMIT
    use_stream: bool = True
    retry_backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=60.0))
    stream_backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=60.0))


class SyncEngine:
    """Keeps one :class:`LocalCache` in sync with the service; see the module docstring."""

    def __init__(
        self,
        cache: LocalCache,
        api: SyncApi,
        branch_id: str | uuid.UUID,
        listener: SyncListener | None = None,
        *,
        settings: EngineSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache, self.api = cache, api
        self.branch_id = uuid.UUID(str(branch_id))
        self.device_id = uuid.UUID(cache.device_id)
        self.listener = listener or SyncListener()
        self.settings = settings or EngineSettings()
        self.stats = SyncStats()
        self._clock = clock
        self._state = ConnectionState.RECONNECTING
        self._lost_alerted = False
        self._watchdog = OutboxWatchdog(self.settings.stuck_after_s, self.stats)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()  # a command committed / the stream asks for a round
        self._retry = asyncio.Event()  # the link looks back: cut a backoff wait short
        self._stop = asyncio.Event()
        self._resume = asyncio.Event()
        self._idle = asyncio.Event()  # outbox empty and pulled to the head, nothing waiting
        self._connected = asyncio.Event()  # a first round succeeded: the stream may start
        self._stream_up = False
        self._pending = -1
        self._batch = self.settings.push_batch

    # -- thread-safe controls ------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    def wake(self) -> None:
        """Sync soon: a command committed. Safe from any thread."""
        self._threadsafe(self._on_wake)

    def retry_now(self) -> None:
        """Retry at once instead of waiting out a backoff. Safe from any thread."""
        self._threadsafe(self._on_retry)

    def stop(self) -> None:
        """Make :meth:`run` return. Safe from any thread."""
        self._threadsafe(self._stop.set)

    def resume(self) -> None:
        """Start syncing again after :attr:`ConnectionState.SIGNED_OUT` (signed in again)."""
        self._threadsafe(self._resume.set)

    def _threadsafe(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            callback()  # not running yet: the flag is seen when run() starts
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            callback()
        else:
            loop.call_soon_threadsafe(callback)

    def _on_wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def _on_retry(self) -> None:
        self._on_wake()
        self._retry.set()

    # -- running -------------------------------------------------------------------

    async def run(self) -> None:
        """Sync until :meth:`stop`; a signed-out session waits for :meth:`resume`."""
        self._loop = asyncio.get_running_loop()
        self.cache.set_wake(self.wake)
        self.listener.on_state(self._state)
        # A cache opened without comparing its projection with its log (the console's,
        # so that its window shows without waiting) is compared here, first.
        try:
            if self.cache.verify():
                self.listener.on_repaired()
        except Exception:  # the file is read and written again by every round: keep going
            log.exception("comparing the cache's projection with its log failed")
        try:
            while not self._stop.is_set():
                self._resume.clear()
                await self._run_signed_in()
                if self._stop.is_set():
                    break
                await _first(self._stop.wait(), self._resume.wait())
                if self._resume.is_set():
                    self._set_state(ConnectionState.RECONNECTING)
        finally:
            self.cache.set_wake(None)
            self._loop = None

    async def _run_signed_in(self) -> None:
        tasks = [asyncio.create_task(self._round_loop(), name="sync-rounds")]
        tasks.append(asyncio.create_task(self._watch(), name="sync-watchdog"))
        if self.settings.use_stream:
            tasks.append(asyncio.create_task(self._stream_loop(), name="sync-stream"))
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait([tasks[0], stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, stop]:
                task.cancel()
            results = await asyncio.gather(*tasks, stop, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result

    async def sync_once(self) -> None:
        """One full round (push everything, pull to the head, leases); raises what failed."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            try:
                await self._guarded_round()
            finally:
                self._loop = None
        else:
            await self._guarded_round()

    async def wait_idle(self, timeout: float) -> None:
        """Wait until the outbox is empty and the last round pulled to the head.

        Raises :class:`TimeoutError` (saying what is left) after ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self._idle.wait()
                    if self.cache.outbox_size() == 0 and not self._wake.is_set():
                        return
                    self._idle.clear()
        except TimeoutError:
            left = self.cache.outbox_size()
            raise TimeoutError(
                f"not idle after {timeout} s: {left} event(s) in the outbox, "
                f"state {self._state.value}"
            ) from None

    # -- the round loop ----------------------------------------------------------------

    async def _round_loop(self) -> None:
        attempt = 0
        while True:
            self._wake.clear()
            try:
                await self._guarded_round()
            except SignedOut:
                return
            except Throttled as exc:
                delay = exc.retry_after or self.settings.retry_backoff.delay(attempt)
            except ClientError:
                delay = self.settings.retry_backoff.delay(attempt)
            except Exception as exc:  # a bug or a broken file: keep trying, and say so
                log.exception("sync round failed unexpectedly")
                self._alert(Alert("sync_error", "error", f"Sync failed unexpectedly: {exc}"))
                delay = self.settings.retry_backoff.delay(attempt)
            else:
                attempt = 0
                self._connected.set()
                if self._wake.is_set():
                    continue
                await self._flush_facts()
                if self._wake.is_set():
                    continue
                idle_s = self.settings.idle_check_s
                await self._wait_wake(idle_s if self._stream_up else self.settings.poll_interval_s)
                continue
            attempt += 1
            await self._wait_retry(delay)
            if self._state is ConnectionState.OFFLINE:
                self._set_state(ConnectionState.RECONNECTING)

    async def _flush_facts(self) -> None:
        """Write the KPI facts a bulk pull left for later, a chunk at a time, until woken."""
        while not self._wake.is_set() and self.cache.flush_facts(FACTS_CHUNK) > 0:
            await asyncio.sleep(0)

    async def _guarded_round(self) -> None:
        """One round, with its failure turned into state and alerts, then re-raised."""
        try:
            await self._round()
        except SignedOut as exc:
            self._signed_out(exc)
            raise
        except Offline as exc:
            self.stats.failures += 1
            self._offline(exc)
            raise
        except Throttled:
            self.stats.failures += 1
            raise
        except ClientError as exc:
            self.stats.failures += 1
            log.warning("sync round failed: %s", exc)
            self._alert(Alert("sync_error", "error", f"Sync with the server failed: {exc}"))
            raise

    async def _round(self) -> None:
        self._idle.clear()
        self.stats.rounds += 1
        self._emit_pending()
        await self._push_all()
        await self._pull_all()
        await self._top_up_leases()
        now = datetime.now(UTC)
        self.cache.mark_synced(now)
        self.listener.on_synced(now)
        self._emit_pending()
        if self._pending == 0 and not self._wake.is_set():
            self._idle.set()

    async def _wait_wake(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _wait_retry(self, delay: float) -> None:
        """Back off for ``delay``; a wake only updates the pending count meanwhile."""
        self._retry.clear()
        deadline = self._clock() + delay
        while (left := deadline - self._clock()) > 0 and not self._retry.is_set():
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await _first(self._wake.wait(), self._retry.wait())
            self._emit_pending()

    # -- push, pull, leases ------------------------------------------------------------

    async def _push_all(self) -> None:
        realignments = 0
        while events := self.cache.pending(self._batch):
            request = PushRequest(branch_id=self.branch_id, device_id=self.device_id, events=events)
            try:
                response = await self._exchange(self.api.push(request))
            except SeqGap as gap:
                if realignments >= MAX_REALIGNMENTS:
                    raise
                realignments += 1
                self.stats.realignments += 1
                moved = self.cache.realign(gap.expected)
                log.info("device_seq gap: service expects %d, moved %d", gap.expected, moved)
                await self._pull_all()
                continue
            except Rejected as exc:
                if exc.status != 413 or len(events) == 1:
                    raise
                self._batch = max(1, len(events) // 2)
                self.stats.batch_splits += 1
                continue
            self.stats.pushes += 1
            self.stats.events_pushed += len(events)
            self._report(self.cache.apply_push_results(response.results))
            pending = self._emit_pending()
            if alert := self._watchdog.progress(self._clock(), pending):
                self._alert(alert)
            if self.cache.pending(1) == events[:1]:
                break  # the verdicts moved nothing; the pull will settle these events
        self._batch = self.settings.push_batch

    async def _pull_all(self) -> None:
        def pulled(applied: AppliedPull) -> None:
            self._online()
            self.stats.pulls += 1
            self._applied(applied)

        await pull_to_head(
            self.api,
            self.cache,
            self.branch_id,
            self.device_id,
            limit=self.settings.pull_limit,
            on_page=pulled,
        )

    async def _top_up_leases(self) -> None:
        have = self.cache.lease_needs()
        if not any(n < self.settings.lease_min_remaining for n in have.values()):
            return
        request = LeaseRequest(
            branch_id=self.branch_id,
            device_id=self.device_id,
            have=have,
            min_remaining=self.settings.lease_min_remaining,
        )
        response = await self._exchange(self.api.leases(request))
        self.cache.add_leases(response.leases, response.device_slot)
        self.stats.leases += len(response.leases)

    async def _exchange(self, call: Awaitable[_T]) -> _T:
        result = await call
        self._online()
        return result

    # -- the stream ----------------------------------------------------------------------

    async def _stream_loop(self) -> None:
        await self._connected.wait()
        attempt = 0
        while True:
            try:
                stream = self.api.stream(
                    self.branch_id, self.cache.cursor(), device_id=self.device_id
                )
                async for item in stream:
                    if not self._stream_up:
                        self._stream_up, attempt = True, 0
                        self.stats.stream_connects += 1
                        self._online()
                        self._on_retry()  # catch up (push and pull) now that the link works
                    self._take(item)
                self._stream_up = False  # ended by the service (token expiry): reconnect
                continue
            except SignedOut as exc:
                self._stream_up = False
                self._signed_out(exc)
                self._on_wake()  # the round loop sees it too and stops
                return
            except Exception as exc:  # ClientError, or a bug: the rounds go on regardless
                log.info("sync stream down: %s", exc)
                was_up, self._stream_up = self._stream_up, False
                if was_up:
                    self._on_wake()  # a round finds out whether the link or only the stream broke
            await asyncio.sleep(self.settings.stream_backoff.delay(attempt))
            attempt += 1

    def _take(self, item: StreamMessage | Heartbeat | Poke) -> None:
        if isinstance(item, StreamMessage):
            if not item.events:
                return
            self.stats.stream_messages += 1
            page = PullResponse(
                events=item.events,
                cursor=item.cursor,
                has_more=True,  # not known to be the head: never settle the outbox on it
                last_device_seq=0,
            )
            self._applied(self.cache.apply_pull(page))
            self._emit_pending()
        elif isinstance(item, Poke):
            self._on_wake()
        elif item.cursor is not None and item.cursor > self.cache.cursor():
            self._on_wake()  # the service is ahead of what the stream brought

    # -- the watchdog ----------------------------------------------------------------------

    async def _watch(self) -> None:
        every = min(1.0, self.settings.stuck_after_s / 4)
        while True:
            await asyncio.sleep(every)
            online = self._state is ConnectionState.ONLINE
            try:
                pending = self.cache.outbox_size()
            except Exception:  # the rounds report a broken file; the watch goes on
                log.exception("the outbox watchdog could not read the outbox")
                continue
            if alert := self._watchdog.observe(self._clock(), online, pending):
                self._alert(alert)

    # -- reporting -------------------------------------------------------------------------

    def _applied(self, applied: AppliedPull) -> None:
        self.stats.events_applied += applied.stored
        self._report(applied.rejections)
        if applied.stored or applied.confirmed_own or applied.reference_changed:
            self.listener.on_applied(applied)

    def _report(self, rejections: list[Rejection]) -> None:
        if not rejections:
            return
        self.stats.rejections += len(rejections)
        self.listener.on_rejections(rejections)
        for r in rejections:
            self._alert(Alert("rejected", "warning", f"{r.description}: {r.reason}"))

    def _emit_pending(self) -> int:
        count = self.cache.outbox_size()
        if count != self._pending:
            self._pending = count
            self.listener.on_pending(count)
        return count

    def _alert(self, alert: Alert) -> None:
        self.listener.on_alert(alert)

    def _set_state(self, state: ConnectionState) -> None:
        if state is not self._state:
            self._state = state
            self.listener.on_state(state)

    def _online(self) -> None:
        if self._state is ConnectionState.SIGNED_OUT:
            return
        self._set_state(ConnectionState.ONLINE)
        if self._lost_alerted:
            self._lost_alerted = False
            self._alert(Alert("connection_restored", "info", "Connected to the server again."))

    def _offline(self, exc: Offline) -> None:
        if self._state is ConnectionState.SIGNED_OUT:
            return
        self._set_state(ConnectionState.OFFLINE)
        if not self._lost_alerted:
            self._lost_alerted = True
            self._alert(Alert("connection_lost", "warning", str(exc)))

    def _signed_out(self, exc: SignedOut) -> None:
        if self._state is ConnectionState.SIGNED_OUT:
            return
        self._set_state(ConnectionState.SIGNED_OUT)
        pending = self.cache.outbox_size()
        kept = f" {pending} unsent change(s) are kept until you sign in again." if pending else ""
        self._alert(Alert("signed_out", "error", f"{exc}{kept}"))


async def pull_to_head(
    api: SyncApi,
    cache: LocalCache,
    branch_id: uuid.UUID,
    device_id: uuid.UUID,
    *,
    limit: int = DEFAULT_PULL_LIMIT,
    on_page: Callable[[AppliedPull], None] | None = None,
) -> int:
    """Pull and apply pages until the head of the branch's log; the events stored.

    The next page is asked for before the current one is applied, as soon as the
    current one says there is more: once that request is on the wire the service
    reads and sends the next page while this side folds and stores the current one,
    so a first sync or the catch-up after an outage takes about the longer of the
    two per page rather than their sum. Pages overlapping what the live stream
    applied meanwhile are harmless: ``apply_pull`` skips events at or below the
    cache's cursor. ``on_page`` is called after each page is applied. A new cache
    asks for the branch's state with the first page (see ``LocalCache.apply_pull``).
    """
    ref = cache.reference_version()

    def ask(after: int, state: bool = False) -> tuple[asyncio.Future[PullResponse], asyncio.Event]:
        sent = asyncio.Event()
        call = api.pull(
            branch_id,
            after,
            device_id=device_id,
            limit=limit,
            ref_version=ref,
            state=state,
            sent=sent,
        )
        return asyncio.ensure_future(call), sent

    ahead, _ = ask(cache.cursor(), state=cache.wants_state())
    stored = 0
    try:
        while True:
            page = await ahead
            if page.reference is not None:
                ref = page.reference.version
            if page.has_more:
                ahead, sent = ask(page.cursor)
                await _sent_or_done(sent, ahead)
            applied = cache.apply_pull(page)
            stored += applied.stored
            if on_page is not None:
                on_page(applied)
            if not page.has_more:
                return stored
    finally:
        if not ahead.done():
            ahead.cancel()  # a page no one will apply (this one failed, or we were stopped)
        elif not ahead.cancelled():
            ahead.exception()  # retrieved: its failure, if any, is not the one to report


async def _sent_or_done(sent: asyncio.Event, call: asyncio.Future[_T]) -> None:
    """Until ``sent`` is set (the request went out) or ``call`` ended, whichever is first."""
    waiting = asyncio.ensure_future(sent.wait())
    try:
        await asyncio.wait((waiting, call), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()


async def _first(*waits: Awaitable[object]) -> None:
    """Wait until the first of ``waits`` finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
