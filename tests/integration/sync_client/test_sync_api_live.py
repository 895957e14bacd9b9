"""SyncApi against the real server's sync endpoints: push, pull, leases, stream, errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from sync.client.api import Heartbeat, Rejected, SeqGap, SyncApi
from sync.client.auth import AuthSession
from sync.client.cache import LocalCache
from sync.client.credentials import MemoryCredentialStore
from sync.client.engine import pull_to_head
from sync.client.views import AppliedPull
from sync.protocol import LeaseRequest, PullResponse, PushRequest, StreamMessage
from tests.integration.sync_client.conftest import Server
from tests.server.api_support import PASSWORD, TENANT
from tests.server.sync_events import Console

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


@pytest.fixture
def console(server: Server) -> Console:
    return Console(branch_id=server.ids["branch_id"])


@pytest_asyncio.fixture
async def api(client: httpx.AsyncClient, console: Console) -> AsyncIterator[SyncApi]:
    session = AuthSession(client, MemoryCredentialStore())
    await session.login(TENANT, "staff1", PASSWORD, device_id=console.id)
    yield SyncApi(client, session)


def push_of(console: Console, events: list[dict[str, object]]) -> PushRequest:
    return PushRequest.model_validate(console.body(events))


async def test_leases_push_and_pull_round_trip(
    server: Server, api: SyncApi, console: Console
) -> None:
    service_id = str(server.ids["service_id"])
    leased = await api.leases(LeaseRequest(branch_id=console.branch_id, device_id=console.id))
    assert [block.service_id for block in leased.leases] == [service_id]
    block = leased.leases[0]
    issued = console.issue(server.ids["service_id"], f"{block.prefix}{block.first:03d}")

    pushed = await api.push(push_of(console, [issued]))

    assert [r.status for r in pushed.results] == ["accepted"]
    assert pushed.results[0].event_id == uuid.UUID(issued["id"])
    assert pushed.last_device_seq == 1
    again = await api.push(push_of(console, [issued]))
    assert [r.status for r in again.results] == ["duplicate"]

    page = await api.pull(console.branch_id, 0, device_id=console.id)

    assert [e.event["id"] for e in page.events] == [issued["id"]]
    assert page.cursor == pushed.server_seq
    assert not page.has_more
    assert page.last_device_seq == 1
    assert page.reference is not None
    assert page.reference.permissions  # the caller's permissions at the branch
    same = await api.pull(
        console.branch_id, page.cursor, device_id=console.id, ref_version=page.reference.version
    )
    assert same.events == []
    assert same.reference is None


async def test_a_gap_in_device_seq_is_a_seq_gap(
    server: Server, api: SyncApi, console: Console
) -> None:
    console.issue(server.ids["service_id"], "B001")  # seq 1 stays in the "outbox"
    second = console.issue(server.ids["service_id"], "B002")

    with pytest.raises(SeqGap) as gap:
        await api.push(push_of(console, [second]))

    assert gap.value.expected == 1
    assert gap.value.status == 409


async def test_a_malformed_event_is_rejected_with_the_server_detail(
    api: SyncApi, console: Console
) -> None:
    with pytest.raises(Rejected) as rejected:
        await api.push(push_of(console, [{"type": "ticket.issued", "id": "nope"}]))
    assert rejected.value.status == 422
    assert rejected.value.detail
    assert not isinstance(rejected.value, SeqGap)


async def test_another_tenants_branch_is_rejected_as_not_found(
    api: SyncApi, console: Console
) -> None:
    with pytest.raises(Rejected) as rejected:
        await api.pull(uuid.uuid4(), 0, device_id=console.id)
    assert rejected.value.status == 404


@pytest.mark.parametrize("server_settings", [{"sync_heartbeat_s": 0.2}])
async def test_the_stream_catches_up_then_beats(
    server: Server, api: SyncApi, console: Console
) -> None:
    issued = console.issue(server.ids["service_id"], "B001")
    pushed = await api.push(push_of(console, [issued]))

    items = []
    async for item in api.stream(console.branch_id, 0, device_id=console.id):
        items.append(item)
        if isinstance(item, Heartbeat):
            break

    first = items[0]
    assert isinstance(first, StreamMessage)
    assert [e.event["id"] for e in first.events] == [issued["id"]]
    assert first.cursor == pushed.server_seq
    assert items[-1] == Heartbeat(cursor=pushed.server_seq)


# -- the sync engine's pull loop: the next page is asked for first ---------------------


async def push_tickets(server: Server, api: SyncApi, console: Console, count: int) -> int:
    events = [console.issue(server.ids["service_id"], f"B{n:03d}") for n in range(1, count + 1)]
    pushed = await api.push(PushRequest.model_validate(console.body(events)))
    assert [r.status for r in pushed.results] == ["accepted"] * count
    return pushed.server_seq


async def test_each_next_page_is_requested_before_the_current_one_is_applied(
    server: Server,
    api: SyncApi,
    console: Console,
    calls: list[str],
    tmp_path: Path,
) -> None:
    head = await push_tickets(server, api, console, 7)
    cache = LocalCache.open(tmp_path / "cache.sqlite3", str(console.branch_id))
    requested_at_apply: list[int] = []
    applied_pages: list[int] = []
    apply = cache.apply_pull

    def noting(page: PullResponse) -> AppliedPull:
        requested_at_apply.append(sum(path.endswith("/sync/pull") for path in calls))
        return apply(page)

    cache.apply_pull = noting  # type: ignore[method-assign]
    try:
        calls.clear()
        stored = await pull_to_head(
            api,
            cache,
            console.branch_id,
            console.id,
            limit=2,
            on_page=lambda applied: applied_pages.append(applied.stored),
        )

        assert stored == 7
        assert applied_pages == [2, 2, 2, 1]
        # Pages 1 to 3 say there is more: the next one was on its way before each was
        # applied; the last says there is none, so nothing more was asked for.
        assert requested_at_apply == [2, 3, 4, 4]  # the first one asked for the state too
        assert sum(path.endswith("/sync/pull") for path in calls) == 4
        assert cache.cursor() == head
        assert sum(len(q) for q in cache.waiting_by_service().values()) == 7
    finally:
        cache.close()


async def test_pull_reports_when_its_request_went_out(
    client: httpx.AsyncClient,
    api: SyncApi,
    console: Console,
) -> None:
    sent = asyncio.Event()
    sent_before_answer: list[bool] = []

    async def answered(response: httpx.Response) -> None:
        sent_before_answer.append(sent.is_set())

    client.event_hooks["response"].append(answered)
    page = await api.pull(console.branch_id, 0, device_id=console.id, sent=sent)

    assert not page.has_more
    assert sent_before_answer == [True]  # set once the request was sent, before any answer


async def test_a_new_cache_asks_for_the_branch_state_with_its_first_page(
    server: Server,
    api: SyncApi,
    console: Console,
    tmp_path: Path,
) -> None:
    head = await push_tickets(server, api, console, 7)
    cache = LocalCache.open(tmp_path / "cache.sqlite3", str(console.branch_id))
    asked: list[dict[str, object]] = []
    real_pull = api.pull

    async def noting(*args: object, **kwargs: object) -> PullResponse:
        asked.append(kwargs)
        return await real_pull(*args, **kwargs)  # type: ignore[arg-type]

    api.pull = noting  # type: ignore[method-assign]
    try:
        assert cache.wants_state()
        stored = await pull_to_head(api, cache, console.branch_id, console.id, limit=2)

        assert stored == 7
        assert [a.get("state", False) for a in asked] == [True, False, False, False]
        assert cache.snapshot_used  # the state, loaded over the stored log
        assert cache._adopting is None
        assert cache.cursor() == head
        assert sum(len(q) for q in cache.waiting_by_service().values()) == 7
        asked.clear()
        await pull_to_head(api, cache, console.branch_id, console.id, limit=2)
        assert [a.get("state", False) for a in asked] == [False]  # only a new cache asks
    finally:
        cache.close()


async def test_without_the_branch_state_a_new_cache_folds_the_log(
    server: Server,
    api: SyncApi,
    console: Console,
    tmp_path: Path,
) -> None:
    """A service that does not send it (an older one): the pages are folded as they come."""
    await push_tickets(server, api, console, 7)
    cache = LocalCache.open(tmp_path / "cache.sqlite3", str(console.branch_id))
    real_pull = api.pull

    async def no_state(*args: object, **kwargs: object) -> PullResponse:
        page = await real_pull(*args, **kwargs)  # type: ignore[arg-type]
        return page.model_copy(update={"state": None})

    api.pull = no_state  # type: ignore[method-assign]
    try:
        assert await pull_to_head(api, cache, console.branch_id, console.id, limit=2) == 7
        assert not cache.snapshot_used
        assert cache._adopting is None
        assert sum(len(q) for q in cache.waiting_by_service().values()) == 7
    finally:
        cache.close()


async def test_a_failing_next_page_stops_after_the_current_one_is_applied(
    server: Server,
    api: SyncApi,
    console: Console,
    tmp_path: Path,
) -> None:
    await push_tickets(server, api, console, 3)
    cache = LocalCache.open(tmp_path / "cache.sqlite3", str(console.branch_id))
    real_pull = api.pull
    pulls = 0

    async def second_fails(*args: object, **kwargs: object) -> PullResponse:
        nonlocal pulls
        pulls += 1
        if pulls == 2:
            raise RuntimeError("the link broke")
        return await real_pull(*args, **kwargs)  # type: ignore[arg-type]

    api.pull = second_fails  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError, match="the link broke"):
            await pull_to_head(api, cache, console.branch_id, console.id, limit=2)
        assert cache.cursor() == 2  # the first page was applied all the same
        # A new cache: it stored the page to adopt the service's state (see
        # LocalCache.apply_pull); it shows the queue once the log reaches that state.
        assert cache._adopting is not None
        assert cache.waiting_by_service() == {}
        api.pull = real_pull  # type: ignore[method-assign]
        await pull_to_head(api, cache, console.branch_id, console.id, limit=2)
        assert cache._adopting is None
        assert sum(len(q) for q in cache.waiting_by_service().values()) == 3
    finally:
        cache.close()
