"""The ticket and counter routes over HTTP: the whole flow, refusals, tenancy and permissions."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select

from core.permissions import DEVICE, STAFF
from server.db import SQLiteWriteQueue
from server.models import AuditLog, User
from server.services import queue, rbac, tenants
from server.services.branches import create_counter, create_service
from tests.server.api_support import World, password_hash, running_app


@dataclass(frozen=True)
class Desk:
    """The seeded world plus services A (Accounts) and L (Loans) and two counters."""

    world: World
    accounts: uuid.UUID
    loans: uuid.UUID
    c1: uuid.UUID  # calls from Accounts, then Loans
    c2: uuid.UUID  # calls from Loans only
    token: str

    def post(self, path: str, body: Any = None, *, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return self.world.client.post(f"/api/v1{path}", json=body, headers=headers)

    def get(self, path: str, *, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return self.world.client.get(f"/api/v1{path}", headers=headers)

    def issue(self, priority: str | int = "normal", service: uuid.UUID | None = None) -> Any:
        body = {"service_id": str(service or self.accounts), "channel": "walk_in"}
        response = self.post(
            f"/branches/{self.world.branch_id}/tickets", {**body, "priority": priority}
        )
        assert response.status_code == 201, response.text
        return response.json()

    def ok(self, path: str, body: Any = None) -> Any:
        response = self.post(path, body)
        assert response.status_code == 200, response.text
        return response.json()

    def ticket(self, ticket_id: str) -> Any:
        response = self.get(f"/tickets/{ticket_id}")
        assert response.status_code == 200, response.text
        return response.json()


def _add_user(world: World, username: str, role: str) -> None:
    with world.session() as session:
        user = User(
            tenant_id=world.tenant_id,
            username=username,
            display_name=username.title(),
            password_hash=password_hash(),
        )
        session.add(user)
        session.flush()
        role_id = rbac.role_by_name(session, world.tenant_id, role).id
        rbac.assign_role(session, world.tenant_id, user.id, role_id, world.branch_id)


def make_desk(db_url: str, **settings: Any) -> Iterator[Desk]:
    """The seeded app with two services and two counters, signed in as the administrator."""
    with running_app(db_url, **settings) as world:
        with world.session() as session:
            accounts = create_service(session, world.tenant_id, world.branch_id, "A", "Accounts")
            loans = create_service(session, world.tenant_id, world.branch_id, "L", "Loans")
            c1 = create_counter(
                session, world.tenant_id, world.branch_id, 1, "Counter 1", [accounts.id, loans.id]
            )
            c2 = create_counter(
                session, world.tenant_id, world.branch_id, 2, "Counter 2", [loans.id]
            )
            ids = {"accounts": accounts.id, "loans": loans.id, "c1": c1.id, "c2": c2.id}
        yield Desk(world=world, token=world.login()["access_token"], **ids)


@pytest.fixture
def desk(db_url: str) -> Iterator[Desk]:
    yield from make_desk(db_url)


# --- the flow ------------------------------------------------------------------------


def test_a_full_flow_over_http(desk: Desk) -> None:
    normal = desk.issue("normal")
    assert normal["number"] == "A001"
    assert (normal["status"], normal["position"], normal["estimated_wait_s"]) == ("waiting", 1, 300)
    assert set(normal) >= {"id", "number", "status", "position", "estimated_wait_s", "issued_at"}
    priority = desk.issue(1)
    urgent = desk.issue("urgent")
    # Higher classes go first: the normal ticket is now third, at 300 s each.
    assert [desk.ticket(t["id"])["position"] for t in (urgent, priority, normal)] == [1, 2, 3]
    assert desk.ticket(normal["id"])["estimated_wait_s"] == 900

    counter = desk.ok(f"/counters/{desk.c1}/open")
    assert counter == {
        "id": str(desk.c1),
        "name": "Counter 1",
        "status": "open",
        "pause_reason": None,
        "current_ticket_id": None,
    }
    called = desk.ok(f"/counters/{desk.c1}/call-next")
    assert (called["id"], called["status"], called["counter_id"]) == (
        urgent["id"],
        "called",
        str(desk.c1),
    )
    assert called["position"] is None
    assert called["called_at"] is not None
    assert desk.ok(f"/tickets/{urgent['id']}/recall")["status"] == "called"
    assert desk.ok(f"/tickets/{urgent['id']}/start")["status"] == "serving"
    done = desk.ok(f"/tickets/{urgent['id']}/complete", {"outcome": "referred"})
    assert done["status"] == "done"
    assert desk.ok(f"/counters/{desk.c1}/call-next")["id"] == priority["id"]
    assert desk.ticket(normal["id"])["position"] == 1

    # Parked aside, then back in the queue; the counter is free meanwhile.
    assert desk.ok(f"/tickets/{priority['id']}/park", {"note": "fetching ID"})["status"] == "parked"
    assert desk.ok(f"/counters/{desk.c1}/call-next")["id"] == normal["id"]
    assert desk.ok(f"/tickets/{priority['id']}/return")["status"] == "waiting"
    assert desk.ok(f"/tickets/{normal['id']}/no-show")["status"] == "no_show"
    assert desk.ok(f"/tickets/{priority['id']}/cancel", {"reason": "left"})["status"] == "cancelled"

    paused = desk.ok(f"/counters/{desk.c1}/pause", {"reason": "Lunch"})
    assert (paused["status"], paused["pause_reason"]) == ("paused", "Lunch")
    assert desk.ok(f"/counters/{desk.c1}/resume")["status"] == "open"
    assert desk.ok(f"/counters/{desk.c1}/close")["status"] == "closed"


def test_transfer_to_the_front_or_the_back(desk: Desk) -> None:
    loans = [desk.issue(service=desk.loans) for _ in range(2)]
    first, second = desk.issue(), desk.issue()
    front = desk.ok(
        f"/tickets/{first['id']}/transfer", {"service_id": str(desk.loans), "position": "front"}
    )
    assert (front["service_id"], front["position"]) == (str(desk.loans), 1)
    back = desk.ok(
        f"/tickets/{second['id']}/transfer", {"service_id": str(desk.loans), "position": "back"}
    )
    assert back["position"] == 4
    assert [desk.ticket(t["id"])["position"] for t in loans] == [2, 3]
    # Counter 2 calls from Loans only, and the transferred ticket is first there.
    desk.ok(f"/counters/{desk.c2}/open")
    assert desk.ok(f"/counters/{desk.c2}/call-next")["id"] == first["id"]


def test_actions_are_audited_with_their_result(desk: Desk) -> None:
    ticket = desk.issue()
    desk.ok(f"/counters/{desk.c1}/open")
    desk.ok(f"/tickets/{ticket['id']}/call", {"counter_id": str(desk.c1)})
    assert (
        desk.post(f"/tickets/{ticket['id']}/call", {"counter_id": str(desk.c1)}).status_code == 409
    )
    with desk.world.session() as session:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.action.like("ticket.%")).order_by(AuditLog.seq)
        ).all()
        seen = [(r.action, r.object_id, r.result) for r in rows]
    assert seen == [
        ("ticket.issue", ticket["id"], "success"),
        ("ticket.call", ticket["id"], "success"),
        ("ticket.call", ticket["id"], "failure"),
    ]


# --- refusals ----------------------------------------------------------------------


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def test_domain_refusals_are_409_with_the_core_sentence(desk: Desk) -> None:
    ticket = desk.issue()
    for counter in (desk.c1, desk.c2):
        desk.ok(f"/counters/{counter}/open")
    desk.ok(f"/tickets/{ticket['id']}/call", {"counter_id": str(desk.c1)})
    again = desk.post(f"/tickets/{ticket['id']}/call", {"counter_id": str(desk.c2)})
    body = _problem(again, 409)
    assert body["detail"] == "A001 was already called at Counter 1; it cannot be called"
    assert body["type"] == "/problems/domain-conflict"
    empty = _problem(desk.post(f"/counters/{desk.c2}/call-next"), 409)
    assert empty["detail"] == "No tickets are waiting for Counter 2 (Loans)"
    assert _problem(desk.post(f"/counters/{desk.c2}/open"), 409)["detail"] == (
        "Counter 2 is already open"
    )
    # The ticket did not move.
    assert desk.ticket(ticket["id"])["counter_id"] == str(desk.c1)


def test_unknown_ids_are_404(desk: Desk) -> None:
    ticket = desk.issue()
    unknown = uuid.uuid4()
    _problem(desk.get(f"/tickets/{unknown}"), 404)
    _problem(desk.post(f"/tickets/{unknown}/start"), 404)
    _problem(desk.post(f"/counters/{unknown}/call-next"), 404)
    _problem(desk.post(f"/branches/{unknown}/tickets", {"service_id": str(desk.accounts)}), 404)
    # A service or counter that is not the branch's is not found either.
    _problem(
        desk.post(f"/branches/{desk.world.branch_id}/tickets", {"service_id": str(unknown)}), 404
    )
    transfer = {"service_id": str(unknown), "position": "back"}
    _problem(desk.post(f"/tickets/{ticket['id']}/transfer", transfer), 404)
    _problem(desk.post(f"/tickets/{ticket['id']}/call", {"counter_id": str(unknown)}), 404)


def test_another_tenants_ticket_counter_and_branch_are_404(desk: Desk) -> None:
    with desk.world.session() as session:
        other = tenants.create_tenant(session, "globex", "Globex")
        branch = tenants.create_branch(session, other.id, "Main", "MAIN", "Europe/Paris")
        service = create_service(session, other.id, branch.id, "A", "Accounts")
        counter = create_counter(session, other.id, branch.id, 1, "Counter 1", [service.id])
        theirs = queue.issue_ticket(
            session, tenant_id=other.id, branch_id=branch.id, service_id=service.id
        )
        ids = (branch.id, service.id, counter.id, theirs.id)
    branch_id, service_id, counter_id, ticket_id = ids
    # The administrator of acme holds every permission tenant-wide, and still sees nothing.
    assert "There is no ticket" in _problem(desk.get(f"/tickets/{ticket_id}"), 404)["detail"]
    _problem(desk.post(f"/tickets/{ticket_id}/cancel"), 404)
    _problem(desk.post(f"/counters/{counter_id}/open"), 404)
    _problem(desk.post(f"/counters/{counter_id}/call-next"), 404)
    _problem(desk.post(f"/branches/{branch_id}/tickets", {"service_id": str(service_id)}), 404)
    # Nor may acme issue into its own branch with globex's service.
    mine = {"service_id": str(service_id)}
    _problem(desk.post(f"/branches/{desk.world.branch_id}/tickets", mine), 404)


def test_a_user_without_the_permission_is_403(desk: Desk) -> None:
    ticket = desk.issue()
    _add_user(desk.world, "kiosk", DEVICE)
    kiosk = desk.world.login("kiosk")["access_token"]
    # A kiosk issues tickets and shows them, but does not call or serve.
    issued = desk.post(
        f"/branches/{desk.world.branch_id}/tickets",
        {"service_id": str(desk.accounts)},
        token=kiosk,
    )
    assert issued.status_code == 201, issued.text
    assert desk.get(f"/tickets/{ticket['id']}", token=kiosk).status_code == 200
    desk.ok(f"/counters/{desk.c1}/open")
    body = {"counter_id": str(desk.c1)}
    _problem(desk.post(f"/tickets/{ticket['id']}/call", body, token=kiosk), 403)
    _problem(desk.post(f"/counters/{desk.c1}/call-next", token=kiosk), 403)
    _problem(desk.post(f"/counters/{desk.c1}/close", token=kiosk), 403)
    _problem(desk.post(f"/tickets/{ticket['id']}/cancel", token=kiosk), 403)
    # Staff of the Main branch may not issue at the North branch.
    staff = desk.world.login("staff1")["access_token"]
    other_branch = f"/branches/{desk.world.other_branch_id}/tickets"
    _problem(desk.post(other_branch, {"service_id": str(desk.accounts)}, token=staff), 403)
    assert desk.ticket(ticket["id"])["status"] == "waiting"
    with desk.world.session() as session:
        denied = session.scalars(select(AuditLog).where(AuditLog.action == "authz.denied")).all()
    assert {row.reason for row in denied} == {
        "tickets.call",
        "counters.operate",
        "tickets.cancel",
        "tickets.issue",
    }


def test_staff_work_their_branch(desk: Desk) -> None:
    _add_user(desk.world, "clerk", STAFF)
    clerk = desk.world.login("clerk")["access_token"]
    ticket = desk.issue()
    assert desk.post(f"/counters/{desk.c1}/open", token=clerk).status_code == 200
    called = desk.post(f"/counters/{desk.c1}/call-next", token=clerk)
    assert called.status_code == 200
    assert called.json()["id"] == ticket["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"priority": "vip"}, "priority"),
        ({"priority": 3}, "priority"),
        ({"priority": True}, "priority"),
        ({"channel": "fax"}, "channel"),
        ({"customer": {"email": "not-an-address"}}, "customer.email"),
        ({"customer": {"phone": "12"}}, "customer.phone"),
        ({"channel": "appointment"}, "appointment_at"),
        ({"notify": ["pigeon"]}, "notify"),
        ({"service_id": "nope"}, "service_id"),
    ],
)
def test_bad_input_is_422_naming_the_field(desk: Desk, body: dict[str, Any], field: str) -> None:
    response = desk.post(
        f"/branches/{desk.world.branch_id}/tickets", {"service_id": str(desk.accounts), **body}
    )
    problem = _problem(response, 422)
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem


def test_issue_accepts_customer_notify_and_appointments(desk: Desk) -> None:
    body = {
        "service_id": str(desk.accounts),
        "channel": "appointment",
        "appointment_at": "2030-01-02T10:00:00+01:00",
        "priority": 0,
        "customer": {"name": "Ada", "email": "ada@Example.org", "phone": "+4915112345678"},
        "notify": ["email", "sms"],
    }
    response = desk.post(f"/branches/{desk.world.branch_id}/tickets", body)
    assert response.status_code == 201, response.text
    with desk.world.session() as session:
        issued = session.scalars(select(AuditLog).where(AuditLog.action == "ticket.issue")).one()
        assert issued.details["notify"] == ["email", "sms"]
        # No personal data in the audit log. Its ids are hex, so "ada" may occur in them
        # by chance: look for the name in every other value, and for the contact details.
        assert "customer" not in issued.details
        words = [str(v).lower() for k, v in issued.details.items() if not k.endswith("_id")]
        assert not any("ada" in word for word in words), issued.details
        text = str(issued.details).lower()
        assert "example.org" not in text
        assert "4915112345678" not in text


def test_pausing_needs_a_reason(desk: Desk) -> None:
    desk.ok(f"/counters/{desk.c1}/open")
    assert (
        _problem(desk.post(f"/counters/{desk.c1}/pause", {}), 422)["errors"][0]["field"] == "reason"
    )
    assert _problem(desk.post(f"/counters/{desk.c1}/pause", {"reason": "  "}), 422)


def test_unauthenticated_calls_are_401(desk: Desk) -> None:
    _problem(desk.world.client.post(f"/api/v1/counters/{desk.c1}/call-next"), 401)
    _problem(desk.world.client.get(f"/api/v1/tickets/{uuid.uuid4()}"), 401)


# --- where the work runs (SQLite) ----------------------------------------------------


def _threads_beginning(desk: Desk) -> list[str]:
    """Names of the threads in which the app's sessions begin, collected from now on."""
    names: list[str] = []

    def note(*_: Any) -> None:
        names.append(threading.current_thread().name)

    event.listen(desk.world.factory, "after_begin", note)
    return names


@contextmanager
def _turn_held_by_a_thread(queue: SQLiteWriteQueue) -> Iterator[None]:
    """Another thread holds the writer's turn, as a connection in its transaction
    does, until the block ends."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        assert queue.take()
        try:
            holding.set()
            release.wait(10)
        finally:
            queue.release()

    writer = threading.Thread(target=hold)
    writer.start()
    try:
        assert holding.wait(5)
        yield
    finally:
        release.set()
        writer.join(5)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_queue_work_runs_in_the_event_loop_when_the_writer_turn_is_free(desk: Desk) -> None:
    began = _threads_beginning(desk)
    desk.issue()
    desk.ok(f"/counters/{desk.c1}/open")
    assert len(began) == 2
    assert not any(name.startswith("AnyIO worker thread") for name in began), began
    queue = desk.world.app.state.write_queue
    assert not queue.locked()  # the turn was given back after each request


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_queue_work_waits_in_line_for_a_busy_writer_without_blocking_the_loop(desk: Desk) -> None:
    """While another thread writes, a ticket waits its turn and the event loop goes on serving."""
    queue = desk.world.app.state.write_queue
    began = _threads_beginning(desk)
    answers: list[httpx.Response] = []
    issuing = threading.Thread(
        target=lambda: answers.append(
            desk.post(
                f"/branches/{desk.world.branch_id}/tickets",
                {"service_id": str(desk.accounts), "channel": "walk_in"},
            )
        )
    )
    try:
        with _turn_held_by_a_thread(queue):
            issuing.start()
            issuing.join(0.3)
            assert issuing.is_alive()  # waiting for the turn
            assert answers == []
            assert began == []
            assert desk.world.client.get("/healthz").status_code == 200  # the loop is not blocked
    finally:
        issuing.join(10)
    assert [a.status_code for a in answers] == [201], answers[0].text if answers else answers
    assert len(began) == 1
    assert not began[0].startswith("AnyIO worker thread"), began
    assert not queue.locked()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_failing_request_in_the_event_loop_gives_the_writer_turn_back(desk: Desk) -> None:
    response = desk.post(f"/counters/{desk.c1}/call-next")  # the counter is not open: 409
    assert response.status_code == 409, response.text
    assert not desk.world.app.state.write_queue.locked()
    desk.ok(f"/counters/{desk.c1}/open")  # and the next writer gets it


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_key_ring_reload_waiting_for_its_turn_does_not_hold_up_the_event_loop(
    desk: Desk,
) -> None:
    """The reload holds the ring's lock while it waits in line behind a request of the loop.

    Checking the next request's token must not wait for that lock in the event
    loop: the request ahead in line could then never run, nor the reload after it.
    """
    queue, keys = desk.world.app.state.write_queue, desk.world.app.state.keys
    answers: dict[str, int] = {}

    def issue(name: str) -> None:
        response = desk.post(
            f"/branches/{desk.world.branch_id}/tickets",
            {"service_id": str(desk.accounts), "channel": "walk_in"},
        )
        answers[name] = response.status_code

    def wait_for_line(length: int) -> None:
        for _ in range(500):
            if len(queue._line) >= length:
                return
            threading.Event().wait(0.01)
        raise AssertionError(f"the line never reached {length}")

    desk.issue()  # the caller's token is checked and cached
    with _turn_held_by_a_thread(queue):
        threads = [threading.Thread(target=issue, args=("first",))]
        threads[0].start()
        wait_for_line(1)  # the first request waits in the event loop's line
        ring, _ = keys._loaded
        keys._loaded = (ring, -1e9)  # due for a reload
        threads.append(threading.Thread(target=keys.ring))  # holds the ring's lock, lines up
        threads[1].start()
        wait_for_line(2)
        threads.append(threading.Thread(target=issue, args=("second",)))
        threads[2].start()
        threads[2].join(0.2)
    for thread in threads:
        thread.join(3)  # well within the 5 s a writer waits before giving up
    assert not any(thread.is_alive() for thread in threads)
    assert answers == {"first": 201, "second": 201}
    assert not queue.locked()
