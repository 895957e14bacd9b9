"""The sync endpoints over HTTP: push verdicts and sequence rules, pull pages, leases, devices.

Every test runs on SQLite and PostgreSQL. Consoles are played by
:class:`tests.server.sync_events.Console`, which stamps events with a device id
and a contiguous ``device_seq`` like a real outbox. The live stream is tested
against a real server in ``test_sync_stream.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from core.events import parse_event
from core.machine import apply as apply_event
from core.numbering import FALLBACK_FLOOR, MAX_DEVICE_SLOTS
from core.permissions import TENANT_ADMIN
from core.state_codec import FORMAT, decode
from server.models import AuditLog, Device, QueueEvent, Service
from server.services import tenants
from server.services.branches import create_counter, create_service
from server.services.queue_state import find_branch, read_config
from sync.protocol import DEVICE_HEADER, MAX_PUSH_BYTES, MAX_PUSH_EVENTS
from tests.server.api_support import TENANT, World, add_user, bearer, running_app
from tests.server.sync_events import Console, today


@dataclass
class Desk:
    """The seeded world with services A (Accounts) and L (Loans) and two counters."""

    world: World
    headers: dict[str, str]  # staff1, at the branch
    accounts: uuid.UUID
    loans: uuid.UUID
    c1: uuid.UUID
    c2: uuid.UUID

    def console(self) -> Console:
        return Console(self.world.branch_id)

    def push(
        self, console: Console, events: list[dict[str, Any]], **overrides: Any
    ) -> httpx.Response:
        body = {**console.body(events), **overrides}
        return self.world.client.post("/api/v1/sync/push", json=body, headers=self.headers)

    def pushed(self, console: Console, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        response = self.push(console, events)
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    def pull(self, console: Console | None = None, **params: Any) -> httpx.Response:
        query = {"branch_id": str(self.world.branch_id), **params}
        if console is not None:
            query["device_id"] = str(console.id)
        return self.world.client.get("/api/v1/sync/pull", params=query, headers=self.headers)

    def lease(self, console: Console, **fields: Any) -> dict[str, Any]:
        body = {"branch_id": str(self.world.branch_id), "device_id": str(console.id), **fields}
        response = self.world.client.post("/api/v1/sync/leases", json=body, headers=self.headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def stored_events(self) -> int:
        with self.world.session() as session:
            return session.scalar(select(func.count()).select_from(QueueEvent)) or 0

    def device(self, console: Console) -> Device | None:
        with self.world.session() as session:
            return session.get(Device, console.id)


@pytest.fixture
def desk(db_url: str) -> Iterator[Desk]:
    with running_app(db_url) as world:
        with world.session() as session:
            tid, bid = world.tenant_id, world.branch_id
            accounts = create_service(session, tid, bid, "A", "Accounts", target_wait_s=600)
            loans = create_service(session, tid, bid, "L", "Loans")
            c1 = create_counter(session, tid, bid, 1, "Counter 1", [accounts.id, loans.id])
            c2 = create_counter(session, tid, bid, 2, "Counter 2", [accounts.id])
            ids = {"accounts": accounts.id, "loans": loans.id, "c1": c1.id, "c2": c2.id}
        yield Desk(world, bearer(world.client, TENANT, "staff1"), **ids)


# --- push: verdicts ----------------------------------------------------------------


def test_push_accepts_in_order_and_a_resent_batch_is_all_duplicates(desk: Desk) -> None:
    console = desk.console()
    batch = [console.open(desk.c1), console.issue(desk.accounts, "A001")]
    first = desk.push(console, batch)
    assert first.status_code == 200, first.text
    body = first.json()
    assert [(r["status"], r["server_seq"]) for r in body["results"]] == [
        ("accepted", 1),
        ("accepted", 2),
    ]
    assert (body["last_device_seq"], body["server_seq"]) == (2, 2)

    again = desk.push(console, batch)
    assert again.status_code == 200, again.text
    assert [(r["event_id"], r["status"], r["server_seq"]) for r in again.json()["results"]] == [
        (e["id"], "duplicate", seq) for e, seq in zip(batch, (1, 2), strict=True)
    ]
    assert again.json()["last_device_seq"] == 2
    assert desk.stored_events() == 2  # no second effect
    device = desk.device(console)
    assert device is not None
    assert (device.last_device_seq, device.branch_id, device.slot) == (2, desk.world.branch_id, 0)
    assert device.last_seen_at is not None

    with desk.world.session() as session:
        audits = session.scalars(
            select(AuditLog).where(AuditLog.action == "sync.push").order_by(AuditLog.seq)
        ).all()
    assert [(a.details["accepted"], a.details["duplicate"]) for a in audits] == [(2, 0), (0, 2)]
    assert {a.object_id for a in audits} == {str(console.id)}


def test_first_commit_wins_when_two_devices_call_the_same_ticket(desk: Desk) -> None:
    one, two = desk.console(), desk.console()
    opened = one.open(desk.c1)
    issued = one.issue(desk.accounts, "A001")
    desk.pushed(one, [opened, issued])
    desk.pushed(two, [two.open(desk.c2)])
    # Both consoles saw A001 waiting while offline and called it.
    call_one = one.call(issued["ticket_id"], desk.c1)
    call_two = two.call(issued["ticket_id"], desk.c2)
    assert desk.pushed(one, [call_one])[0]["status"] == "accepted"

    [refused] = desk.pushed(two, [call_two])
    assert refused["status"] == "rejected"
    assert refused["server_seq"] is None
    assert "A001" in refused["reason"]
    assert "Counter 1" in refused["reason"]

    with desk.world.session() as session:
        row = session.get(QueueEvent, uuid.UUID(call_two["id"]))
    assert row is not None
    assert (row.status, row.reason, row.device_seq) == ("rejected", refused["reason"], 2)
    # The rejection is not pulled, and it does not wedge the second console's outbox.
    pulled = desk.pull(two).json()
    assert call_two["id"] not in {e["event"]["id"] for e in pulled["events"]}
    assert pulled["last_device_seq"] == 2
    [again] = desk.pushed(two, [call_two])
    assert (again["status"], again["reason"]) == ("duplicate", refused["reason"])
    later = two.issue(desk.accounts, "A002")
    assert desk.pushed(two, [later])[0]["status"] == "accepted"


# --- push: refusals of the whole batch ----------------------------------------------


def test_a_gap_in_device_seq_is_409_with_the_expected_seq_and_applies_nothing(
    desk: Desk,
) -> None:
    console = desk.console()
    desk.pushed(console, [console.open(desk.c1)])
    skipped = console.issue(desk.accounts, "A001")  # seq 2, never sent
    third = console.issue(desk.accounts, "A002")  # seq 3
    response = desk.push(console, [third])
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["expected_device_seq"] == 2
    assert "device_seq 3" in problem["detail"]
    assert desk.stored_events() == 1

    # A new event reusing an acknowledged seq is no duplicate either.
    reused = dict(skipped, id=str(uuid.uuid4()), device_seq=1)
    assert desk.push(console, [reused]).json()["expected_device_seq"] == 2
    # In order, both go through; the already stored first event is a duplicate.
    results = desk.pushed(console, [skipped, third])
    assert [r["status"] for r in results] == ["accepted", "accepted"]


def test_a_gap_inside_a_batch_refuses_the_whole_batch(desk: Desk) -> None:
    console = desk.console()
    first = console.open(desk.c1)
    console.seq += 1  # lost one
    after_gap = console.issue(desk.accounts, "A001")
    response = desk.push(console, [first, after_gap])
    assert response.status_code == 409
    assert response.json()["expected_device_seq"] == 2
    assert desk.stored_events() == 0


def test_too_many_events_or_bytes_are_413(desk: Desk) -> None:
    console = desk.console()
    many = [console.open(desk.c1) for _ in range(MAX_PUSH_EVENTS + 1)]
    response = desk.push(console, many)
    assert response.status_code == 413
    assert f"at most {MAX_PUSH_EVENTS} events" in response.json()["detail"]

    event = console.open(desk.c1)
    padded = json.dumps({**console.body([event]), "pad": "x" * MAX_PUSH_BYTES})
    response = desk.world.client.post(
        "/api/v1/sync/push",
        content=padded,
        headers={**desk.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert f"at most {MAX_PUSH_BYTES} bytes" in response.json()["detail"]
    # Without a Content-Length (chunked), the body is counted as it comes in.
    chunks = (padded[i : i + 65536].encode() for i in range(0, len(padded), 65536))
    response = desk.world.client.post(
        "/api/v1/sync/push",
        content=chunks,
        headers={**desk.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "body is larger" in response.json()["detail"]
    assert desk.stored_events() == 0


def test_a_malformed_event_is_422_naming_index_and_field_and_nothing_is_applied(
    desk: Desk,
) -> None:
    console = desk.console()
    good = console.open(desk.c1)
    bad = console.call(str(uuid.uuid4()), desk.c1)
    del bad["counter_id"]
    response = desk.push(console, [good, bad])
    assert response.status_code == 422, response.text
    problem = response.json()
    assert (problem["index"], problem["field"], problem["event_id"]) == (1, "counter_id", bad["id"])
    assert "events[1]" in problem["detail"]
    assert "counter_id" in problem["detail"]
    assert problem["errors"][0]["field"] == "events.1.counter_id"
    assert desk.stored_events() == 0
    assert desk.device(console) is None  # not even registered: the transaction rolled back

    stranger = Console(desk.world.branch_id)
    foreign = stranger.open(desk.c1)
    response = desk.push(console, [foreign])
    assert response.status_code == 422
    assert (response.json()["index"], response.json()["field"]) == (0, "device_id")
    # The first event with a problem is named, whichever kind of problem it has.
    cases = [([good, foreign, bad], (1, "device_id")), ([bad, foreign], (0, "counter_id"))]
    for batch, first in cases:
        response = desk.push(console, batch)
        assert response.status_code == 422
        assert (response.json()["index"], response.json()["field"]) == first
    assert desk.stored_events() == 0


def test_another_tenants_branch_is_404(desk: Desk) -> None:
    with desk.world.session() as session:
        other = tenants.create_tenant(session, "globex", "Globex")
        branch = tenants.create_branch(session, other.id, "Globex Main", "MAIN", "Europe/Paris")
        add_user(session, other.id, "admin", TENANT_ADMIN, None)
        foreign_branch = branch.id
    console = Console(foreign_branch)
    push = desk.push(console, [console.open(desk.c1)])
    assert push.status_code == 404
    pull = desk.world.client.get(
        "/api/v1/sync/pull", params={"branch_id": str(foreign_branch)}, headers=desk.headers
    )
    assert pull.status_code == 404
    lease = desk.world.client.post(
        "/api/v1/sync/leases",
        json={"branch_id": str(foreign_branch), "device_id": str(console.id)},
        headers=desk.headers,
    )
    assert lease.status_code == 404
    # Their console is not ours to name either, even at our own branch.
    globex = bearer(desk.world.client, "globex", "admin")
    theirs = desk.world.client.post("/api/v1/sync/push", json=console.body([]), headers=globex)
    assert theirs.status_code == 200
    mine = desk.pull(console)
    assert mine.status_code == 404, mine.text


# --- devices ---------------------------------------------------------------------------


def test_devices_are_bound_to_their_branch_and_revocation_stops_them(desk: Desk) -> None:
    console = desk.console()
    desk.pushed(console, [console.open(desk.c1)])
    elsewhere = desk.world.client.get(
        "/api/v1/sync/pull",
        params={"branch_id": str(desk.world.other_branch_id), "device_id": str(console.id)},
        headers=bearer(desk.world.client, TENANT, "admin"),
    )
    assert elsewhere.status_code == 409
    assert "another branch" in elsewhere.json()["detail"]

    with desk.world.session() as session:
        device = session.get(Device, console.id)
        assert device is not None
        device.revoked_at = datetime.now(UTC)
    refused = desk.push(console, [console.issue(desk.accounts, "A001")])
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("This device has been revoked")
    by_header = desk.world.client.get(
        "/api/v1/sync/pull",
        params={"branch_id": str(desk.world.branch_id)},
        headers={**desk.headers, DEVICE_HEADER: str(console.id)},
    )
    assert by_header.status_code == 403


def test_a_token_of_a_revoked_device_no_longer_authenticates(desk: Desk) -> None:
    console = desk.console()
    desk.pushed(console, [console.open(desk.c1)])  # registers the device
    login = desk.world.client.post(
        "/api/v1/auth/login",
        json={
            "tenant": TENANT,
            "username": "staff1",
            "password": "correct horse battery staple",
            "device_id": str(console.id),
        },
    )
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    query = {"branch_id": str(desk.world.branch_id)}
    client = desk.world.client
    assert client.get("/api/v1/sync/pull", params=query, headers=headers).status_code == 200
    with desk.world.session() as session:
        device = session.get(Device, console.id)
        assert device is not None
        device.revoked_at = datetime.now(UTC)
    response = client.get("/api/v1/sync/pull", params=query, headers=headers)
    assert response.status_code == 401
    # Other consoles' tokens are unaffected.
    assert client.get("/api/v1/sync/pull", params=query, headers=desk.headers).status_code == 200


def test_each_new_device_of_a_branch_gets_its_own_slot_until_none_is_left(desk: Desk) -> None:
    with desk.world.session() as session:
        for slot in range(2, MAX_DEVICE_SLOTS):  # an administrator registered many kiosks
            session.add(
                Device(
                    tenant_id=desk.world.tenant_id,
                    branch_id=desk.world.branch_id,
                    name=f"Kiosk {slot}",
                    kind="kiosk",
                    slot=slot,
                )
            )
    slots = [desk.pull(desk.console()).json()["reference"]["device_slot"] for _ in range(3)]
    assert slots == [0, 1, None]


# --- pull ------------------------------------------------------------------------------


def test_pull_pages_by_cursor_and_skips_rejected_events(desk: Desk) -> None:
    console = desk.console()
    events = [console.open(desk.c1)] + [
        console.issue(desk.accounts, f"A{n:03}") for n in range(1, 6)
    ]
    duplicate_number = console.issue(desk.accounts, "A003")  # refused: A003 exists
    results = desk.pushed(console, [*events, duplicate_number])
    assert results[-1]["status"] == "rejected"

    seen: list[int] = []
    cursor, pages = 0, 0
    while True:
        page = desk.pull(console, after=cursor, limit=4).json()
        pages += 1
        seen += [e["server_seq"] for e in page["events"]]
        assert page["cursor"] == (seen[-1] if seen else 0)
        cursor = page["cursor"]
        if not page["has_more"]:
            break
        assert len(page["events"]) == 4
    assert (seen, pages) == ([1, 2, 3, 4, 5, 6], 2)
    assert [e["id"] for e in events] == [
        e["event"]["id"] for e in desk.pull(console).json()["events"]
    ]
    last = desk.pull(console, after=6).json()
    assert (last["events"], last["cursor"], last["has_more"]) == ([], 6, False)
    assert last["last_device_seq"] == 7


def test_reference_data_comes_only_when_its_version_changed(desk: Desk) -> None:
    console = desk.console()
    first = desk.pull(console).json()["reference"]
    assert first is not None
    assert [(s["code"], s["target_wait_s"], s["active"]) for s in first["services"]] == [
        ("A", 600, True),
        ("L", None, True),
    ]
    assert [c["name"] for c in first["counters"]] == ["Counter 1", "Counter 2"]
    assert first["counters"][0]["work_profile"] == [str(desk.accounts), str(desk.loans)]
    assert [s["display_name"] for s in first["staff"]] == ["Admin", "Staff1"]
    assert "sync.device" in first["permissions"]
    assert "users.manage" not in first["permissions"]
    assert (first["branch"]["time_zone"], first["device_slot"]) == ("Europe/Paris", 0)

    same = desk.pull(console, ref_version=first["version"]).json()
    assert same["reference"] is None
    with desk.world.session() as session:
        loans = session.get(Service, desk.loans)
        assert loans is not None
        loans.active = False
    changed = desk.pull(console, ref_version=first["version"]).json()["reference"]
    assert changed is not None
    assert changed["version"] != first["version"]
    assert [(s["code"], s["active"]) for s in changed["services"]] == [("A", True), ("L", False)]
    # The version is a hash of the content: the same content gives the same version.
    assert desk.pull(console).json()["reference"]["version"] == changed["version"]


def test_a_first_pull_asking_for_the_state_gets_the_services_fold_of_the_log(
    desk: Desk,
) -> None:
    console = desk.console()
    events = [console.open(desk.c1)] + [
        console.issue(desk.accounts, f"A{n:03}") for n in range(1, 6)
    ]
    events.append(console.call(events[1]["ticket_id"], desk.c1))
    rejected = console.issue(desk.accounts, "A003")  # refused: not in the log, not folded
    desk.pushed(console, [*events, rejected])

    page = desk.pull(console, after=0, limit=2, state="true").json()

    assert [e["server_seq"] for e in page["events"]] == [1, 2]
    assert page["has_more"]
    state = page["state"]
    assert (state["format"], state["server_seq"], state["events"]) == (FORMAT, 7, 7)
    assert state["event_id"] == events[-1]["id"]
    with desk.world.session() as session:  # the log folded afresh, from what a pull gives
        branch = find_branch(session, desk.world.tenant_id, desk.world.branch_id)
        folded = read_config(session, branch).new_state(desk.world.branch_id)
    for event in desk.pull(console).json()["events"]:
        apply_event(folded, parse_event(event["event"]))
    decoded = decode(state["body"])
    assert decoded == folded
    assert decoded.counters[str(desk.c1)].current_ticket_id == events[1]["ticket_id"]
    assert decoded.applied == folded.applied == 7
    # Only a first pull (after=0) that does not hold the whole log gets it, and only if asked.
    assert desk.pull(console, after=0, limit=2).json()["state"] is None
    assert desk.pull(console, after=2, limit=2, state="true").json()["state"] is None
    assert desk.pull(console, after=0, limit=100, state="true").json()["state"] is None


def test_pull_needs_no_device_and_caps_the_limit(desk: Desk) -> None:
    response = desk.pull(limit=10**6)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["last_device_seq"], body["reference"]["device_slot"]) == (0, None)
    a, b = desk.console(), desk.console()
    mismatch = desk.world.client.get(
        "/api/v1/sync/pull",
        params={"branch_id": str(desk.world.branch_id), "device_id": str(a.id)},
        headers={**desk.headers, DEVICE_HEADER: str(b.id)},
    )
    assert mismatch.status_code == 422


# --- leases ----------------------------------------------------------------------------


def test_leased_numbers_of_two_devices_never_overlap(desk: Desk) -> None:
    """Two consoles each issue 100 tickets offline from their own leases; all are accepted."""
    one, two = desk.console(), desk.console()
    pools: dict[uuid.UUID, list[int]] = {one.id: [], two.id: []}
    held: dict[uuid.UUID, list[int]] = {one.id: [], two.id: []}
    for _ in range(3):
        for console in (one, two):
            have = {str(desk.accounts): len(pools[console.id])}
            answer = desk.lease(console, service_ids=[str(desk.accounts)], have=have,
                                min_remaining=100)  # fmt: skip
            for block in answer["leases"]:
                assert (block["prefix"], block["business_day"]) == ("A", today().isoformat())
                numbers = range(block["first"], block["last"] + 1)
                pools[console.id] += numbers
                held[console.id] += numbers
            assert answer["device_slot"] == (0 if console is one else 1)
    assert all(len(p) >= 100 for p in pools.values())
    assert not set(held[one.id]) & set(held[two.id])
    assert max(held[one.id] + held[two.id]) < FALLBACK_FLOOR

    # A device holding enough gets nothing more.
    enough = desk.lease(one, have={str(desk.accounts): 100, str(desk.loans): 100},
                        min_remaining=25)  # fmt: skip
    assert enough["leases"] == []

    for console in (one, two):
        desk.pushed(console, [console.open(desk.c1 if console is one else desk.c2)])
        batch = [console.issue(desk.accounts, f"A{n:03}") for n in pools[console.id][:100]]
        results = desk.pushed(console, batch)
        assert {r["status"] for r in results} == {"accepted"}, results[:3]
    # The service's own numbering (kiosk tickets over REST) keeps clear of both.
    response = desk.world.client.post(
        f"/api/v1/branches/{desk.world.branch_id}/tickets",
        json={"service_id": str(desk.accounts)},
        headers=desk.headers,
    )
    assert response.status_code == 201, response.text
    assert int(response.json()["number"][1:]) not in set(held[one.id]) | set(held[two.id])


def test_concurrent_leases_of_many_devices_never_overlap(desk: Desk) -> None:
    consoles = [desk.console() for _ in range(6)]

    def lease_three(console: Console) -> list[tuple[int, int]]:
        blocks = []
        for _ in range(3):
            answer = desk.lease(console, service_ids=[str(desk.accounts)], min_remaining=1)
            blocks += [(b["first"], b["last"]) for b in answer["leases"]]
        return blocks

    with ThreadPoolExecutor(max_workers=len(consoles)) as pool:
        blocks = [b for found in pool.map(lease_three, consoles) for b in found]
    numbers = [n for first, last in blocks for n in range(first, last + 1)]
    assert len(blocks) == 3 * len(consoles)
    assert len(numbers) == len(set(numbers)) == 50 * len(blocks)
    slots = {desk.lease(c, min_remaining=0)["device_slot"] for c in consoles}
    assert slots == set(range(len(consoles)))


def test_leases_default_to_every_active_service_and_refuse_foreign_ones(desk: Desk) -> None:
    console = desk.console()
    answer = desk.lease(console)
    assert sorted(b["service_id"] for b in answer["leases"]) == sorted(
        [str(desk.accounts), str(desk.loans)]
    )
    with desk.world.session() as session:
        elsewhere = create_service(
            session, desk.world.tenant_id, desk.world.other_branch_id, "X", "Elsewhere"
        )
    response = desk.world.client.post(
        "/api/v1/sync/leases",
        json={
            "branch_id": str(desk.world.branch_id),
            "device_id": str(console.id),
            "service_ids": [str(elsewhere.id)],
        },
        headers=desk.headers,
    )
    assert response.status_code == 404
