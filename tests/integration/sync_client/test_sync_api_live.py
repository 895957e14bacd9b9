"""SyncApi against the real server's sync endpoints: push, pull, leases, stream, errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from sync.client.api import Heartbeat, Rejected, SeqGap, SyncApi
from sync.client.auth import AuthSession
from sync.client.credentials import MemoryCredentialStore
from sync.protocol import LeaseRequest, PushRequest, StreamMessage
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
