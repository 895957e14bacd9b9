"""The in-process wake-up hub of the live sync streams, and the stream's shared reads.

A commit wakes the serving loop only when a stream of its branch listens; a
shared read counts as listening for as long as it runs, so a commit landing
during a read that every stream has left still makes the next stream read
again instead of joining that read.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest

from server.api import sync_stream
from server.services.sync_hub import SyncHub


def _from_a_thread(hub: SyncHub, branch_id: uuid.UUID) -> None:
    """Publish as a request's worker thread does after its commit."""
    worker = threading.Thread(target=hub.publish, args=(branch_id,))
    worker.start()
    worker.join()


async def _settle() -> None:
    """Let the loop run what other threads handed it."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_commit_wakes_the_streams_of_its_branch() -> None:
    async def scenario() -> None:
        hub = SyncHub()
        hub.bind(asyncio.get_running_loop())
        branch, other = uuid.uuid4(), uuid.uuid4()
        with hub.subscribe(branch) as wake, hub.subscribe(other) as other_wake:
            _from_a_thread(hub, branch)
            await asyncio.wait_for(wake.wait(), 5.0)
            assert not other_wake.is_set()
            assert hub.woken_at(branch) > 0
            assert hub.woken_at(other) == 0

    asyncio.run(scenario())


def test_a_commit_of_a_branch_nobody_streams_does_not_wake_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = SyncHub()
        hub.bind(loop)
        handed: list[Any] = []
        hand = loop.call_soon_threadsafe

        def call_soon_threadsafe(callback: Any, *args: Any) -> Any:
            handed.append(callback)
            return hand(callback, *args)

        monkeypatch.setattr(loop, "call_soon_threadsafe", call_soon_threadsafe)
        branch = uuid.uuid4()
        with hub.subscribe(uuid.uuid4()):  # someone streams another branch
            _from_a_thread(hub, branch)
            await _settle()
        assert handed == []
        assert hub.woken_at(branch) == 0
        with hub.subscribe(branch):
            _from_a_thread(hub, branch)
            await _settle()
        assert len(handed) == 1
        assert hub.woken_at(branch) > 0

    asyncio.run(scenario())


def test_a_commit_during_a_read_every_stream_left_makes_the_next_stream_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The read counts as a subscriber: the commit is stamped, the next stream reads anew."""
    release = threading.Event()
    reads: list[int] = []

    def read(_factory: Any, _branch_id: uuid.UUID, cursor: int) -> Any:
        reads.append(cursor)
        number = len(reads)
        if number == 1:
            release.wait(5.0)

        class Page:
            def stream_message(self) -> str:
                return f"read {number}"

        return Page()

    monkeypatch.setattr(sync_stream, "_read", read)

    async def scenario() -> None:
        hub = SyncHub()
        hub.bind(asyncio.get_running_loop())
        shared = sync_stream.SharedReads(hub)
        branch = uuid.uuid4()
        first = asyncio.ensure_future(shared.read(None, branch, 7))  # type: ignore[arg-type]
        while not reads:
            await asyncio.sleep(0.01)
        # No stream is subscribed now, only the running read.
        await asyncio.to_thread(hub.publish, branch)
        await _settle()
        second = asyncio.ensure_future(shared.read(None, branch, 7))  # type: ignore[arg-type]
        await _settle()
        release.set()
        assert (await first)[1] == "read 1"
        assert (await second)[1] == "read 2"  # its own read, begun after the commit
        assert reads == [7, 7]

    asyncio.run(scenario())
