"""The queue service: commands, pushed events, numbering, the state cache, views, tenancy."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, Text, cast, func, select
from sqlalchemy.orm import Session, sessionmaker

from core import commands as cmd
from core.errors import DomainError
from core.events import Customer, EventBase, event_to_dict, parse_event
from core.kpi_rows import fact_rows
from core.machine import apply, decide
from core.state import TicketStatus
from core.values import Channel, TicketNumber
from server.db import make_session_factory, session_scope
from server.models import (
    Branch,
    Counter,
    Device,
    KpiFact,
    NumberLease,
    QueueEvent,
    Service,
    Tenant,
    Ticket,
    User,
)
from server.services import queue, queue_state
from server.services.kpi_facts import BranchRef, catch_up
from server.services.queue import (
    BranchStates,
    NotFoundInTenant,
    TicketNotFound,
    append_events,
    execute,
    issue_ticket,
    ticket_view,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 in Berlin, Monday


@dataclass(frozen=True)
class Seed:
    tenant_id: uuid.UUID
    branch_id: uuid.UUID
    accounts: str  # service ids and counter ids as the core spells them
    loans: str
    c1: str
    c2: str
    device_id: uuid.UUID
    user_id: uuid.UUID


def _seed(factory: sessionmaker[Session], slug: str = "acme") -> Seed:
    with session_scope(factory) as s:
        tenant = Tenant(slug=slug, name=slug.title())
        s.add(tenant)
        s.flush()
        branch = Branch(tenant_id=tenant.id, name="Main", code="MAIN", time_zone="Europe/Berlin")
        s.add(branch)
        s.flush()
        accounts = Service(tenant_id=tenant.id, branch_id=branch.id, code="A", name="Accounts")
        loans = Service(tenant_id=tenant.id, branch_id=branch.id, code="L", name="Loans")
        s.add_all([accounts, loans])
        s.flush()
        c1 = Counter(
            tenant_id=tenant.id,
            branch_id=branch.id,
            name="Counter 1",
            number=1,
            work_profile=[str(accounts.id), str(loans.id)],
        )
        c2 = Counter(
            tenant_id=tenant.id,
            branch_id=branch.id,
            name="Counter 2",
            number=2,
            work_profile=[str(accounts.id)],
        )
        device = Device(tenant_id=tenant.id, branch_id=branch.id, name="Desk 1")
        user = User(tenant_id=tenant.id, username="staff1", password_hash="x")
        s.add_all([c1, c2, device, user])
        s.flush()
        return Seed(
            tenant.id,
            branch.id,
            str(accounts.id),
            str(loans.id),
            str(c1.id),
            str(c2.id),
            device.id,
            user.id,
        )


@pytest.fixture
def seed(session_factory: sessionmaker[Session]) -> Seed:
    return _seed(session_factory)


@pytest.fixture
def states() -> BranchStates:
    return BranchStates()


class Desk:
    """Runs commands on the seeded branch, one transaction each."""

    def __init__(self, factory: sessionmaker[Session], seed: Seed, states: BranchStates) -> None:
        self.factory, self.seed, self.states = factory, seed, states

    def run(self, command: cmd.Command, **kw: Any) -> list[EventBase]:
        with session_scope(self.factory) as s:
            return execute(
                s,
                tenant_id=self.seed.tenant_id,
                branch_id=self.seed.branch_id,
                command=command,
                states=self.states,
                **kw,
            )

    def issue(
        self, service_id: uuid.UUID | str | None = None, at: datetime = T0, **kw: Any
    ) -> queue.TicketView:
        with session_scope(self.factory) as s:
            return issue_ticket(
                s,
                tenant_id=self.seed.tenant_id,
                branch_id=self.seed.branch_id,
                service_id=service_id or self.seed.accounts,
                at=at,
                states=self.states,
                **kw,
            )

    def view(self, ticket_id: uuid.UUID) -> queue.TicketView:
        with session_scope(self.factory) as s:
            return ticket_view(s, self.seed.tenant_id, ticket_id, states=self.states)

    def counts(self) -> tuple[int, int, int]:
        with session_scope(self.factory) as s:
            return tuple(  # type: ignore[return-value]
                s.scalar(select(func.count()).select_from(model))
                for model in (QueueEvent, Ticket, NumberLease)
            )


@pytest.fixture
def desk(session_factory: sessionmaker[Session], seed: Seed, states: BranchStates) -> Desk:
    return Desk(session_factory, seed, states)


def _projection_matches_state(desk: Desk) -> None:
    with session_scope(desk.factory) as s:
        state = BranchStates().load(s, desk.seed.tenant_id, desk.seed.branch_id)
        rows = s.scalars(select(Ticket).where(Ticket.branch_id == desk.seed.branch_id)).all()
        assert {str(r.id) for r in rows} == set(state.tickets)
        for row in rows:
            t = state.tickets[str(row.id)]
            assert (row.number, row.status, str(row.service_id)) == (
                t.number,
                t.status.value,
                t.service_id,
            )
            assert (str(row.counter_id) if row.counter_id else None) == t.counter_id
            assert (row.called_at, row.started_at, row.finished_at) == (
                t.called_at,
                t.service_started_at,
                t.finished_at,
            )
    _facts_match_log(desk)


def _facts_match_log(desk: Desk) -> None:
    """Caught up, the KPI facts are the rows of the whole accepted log, no more, no fewer."""
    branch_id = desk.seed.branch_id
    with session_scope(desk.factory) as s:
        zone = BranchStates().load(s, desk.seed.tenant_id, branch_id).time_zone
    catch_up(desk.factory, BranchRef(desk.seed.tenant_id, branch_id, str(zone)))
    with session_scope(desk.factory) as s:
        log = s.scalars(
            select(QueueEvent.payload)
            .where(QueueEvent.branch_id == branch_id, QueueEvent.status == "accepted")
            .order_by(QueueEvent.server_seq)
        ).all()
        stored = s.execute(
            select(
                KpiFact.ticket_id, KpiFact.ord, KpiFact.kind, KpiFact.service_id,
                KpiFact.counter_id, KpiFact.staff_id, KpiFact.local_day, KpiFact.hour_start,
                KpiFact.value, KpiFact.no_show,
            ).where(KpiFact.branch_id == branch_id)
        ).all()  # fmt: skip
    expected = [
        (uuid.UUID(r.ticket_id), r.ord, r.kind, r.service_id, r.counter_id, r.staff_id,
         r.local_day, r.hour_start, r.value, int(r.no_show))
        for r in fact_rows([parse_event(p) for p in log], zone)
    ]  # fmt: skip
    assert sorted(tuple(r) for r in stored) == sorted(expected)


# -- commands --------------------------------------------------------------------


def test_a_ticket_goes_from_issue_to_done_and_the_projection_follows(desk: Desk) -> None:
    seed = desk.seed
    desk.run(cmd.OpenCounter(at=T0, counter_id=seed.c1), actor_user_id=seed.user_id)
    first = desk.issue(at=T0 + timedelta(minutes=1))
    second = desk.issue(at=T0 + timedelta(minutes=2))
    assert (first.number, second.number) == ("A001", "A002")
    assert (first.status, first.position, second.position) == (TicketStatus.WAITING, 1, 2)

    [called] = desk.run(cmd.CallNext(at=T0 + timedelta(minutes=3), counter_id=seed.c1))
    assert called.model_dump()["ticket_id"] == str(first.id)
    desk.run(cmd.StartService(at=T0 + timedelta(minutes=4), ticket_id=str(first.id)))
    desk.run(cmd.Complete(at=T0 + timedelta(minutes=9), ticket_id=str(first.id)))

    done = desk.view(first.id)
    assert (done.status, done.position, done.counter_id) == (
        TicketStatus.DONE,
        None,
        uuid.UUID(seed.c1),
    )
    assert desk.view(second.id).position == 1
    _projection_matches_state(desk)
    with session_scope(desk.factory) as s:
        log = s.execute(
            select(QueueEvent.server_seq, QueueEvent.type, QueueEvent.actor_user_id)
            .where(QueueEvent.branch_id == seed.branch_id)
            .order_by(QueueEvent.server_seq)
        ).all()
    assert [seq for seq, _, _ in log] == [1, 2, 3, 4, 5, 6]
    assert log[0][1:] == ("counter.opened", seed.user_id)
    assert [t for _, t, _ in log][3:] == [
        "ticket.called",
        "ticket.service_started",
        "ticket.completed",
    ]


def test_a_refused_command_writes_nothing(desk: Desk) -> None:
    seed = desk.seed
    ticket = desk.issue()
    before = desk.counts()
    with pytest.raises(DomainError, match="Counter 1 is closed"):
        desk.run(cmd.CallNext(at=T0, counter_id=seed.c1))
    with pytest.raises(DomainError, match="A001 is waiting; it cannot be completed"):
        desk.run(cmd.Complete(at=T0, ticket_id=str(ticket.id)))
    with pytest.raises(DomainError, match="needs an appointment time"):
        desk.issue(seed.loans, channel=Channel.APPOINTMENT)  # would lease the first L block
    assert desk.counts() == before
    assert desk.states.is_cached(seed.branch_id)  # a refusal leaves the state intact


def test_unknown_or_foreign_ids_are_not_found(
    session_factory: sessionmaker[Session], desk: Desk
) -> None:
    other = _seed(session_factory, "other")
    mine = desk.issue()
    with session_scope(desk.factory) as s, pytest.raises(NotFoundInTenant, match="no branch"):
        execute(
            s,
            tenant_id=other.tenant_id,
            branch_id=desk.seed.branch_id,
            command=cmd.OpenCounter(at=T0, counter_id=desk.seed.c1),
            states=desk.states,
        )
    with pytest.raises(NotFoundInTenant, match="no service"):
        desk.issue(other.accounts)
    with pytest.raises(NotFoundInTenant, match="no counter"):
        desk.run(cmd.OpenCounter(at=T0, counter_id=other.c1))
    with pytest.raises(NotFoundInTenant, match="no service"):
        desk.run(cmd.Transfer(at=T0, ticket_id=str(mine.id), to_service_id=other.loans))
    with pytest.raises(TicketNotFound):
        desk.run(cmd.Cancel(at=T0, ticket_id=str(uuid.uuid4())))
    with session_scope(desk.factory) as s, pytest.raises(TicketNotFound):
        ticket_view(s, other.tenant_id, mine.id, states=desk.states)
    with session_scope(desk.factory) as s, pytest.raises(TicketNotFound):
        ticket_view(s, desk.seed.tenant_id, "not-a-uuid", states=desk.states)
    assert issubclass(TicketNotFound, LookupError)


# -- numbering -------------------------------------------------------------------


def test_numbers_continue_per_service_and_restart_the_next_business_day(desk: Desk) -> None:
    seed = desk.seed
    assert [desk.issue(at=T0 + timedelta(minutes=i)).number for i in range(3)] == [
        "A001",
        "A002",
        "A003",
    ]
    assert desk.issue(seed.loans).number == "L001"
    # 23:30 UTC is already Tuesday in Berlin: a new business day.
    assert desk.issue(at=datetime(2026, 3, 2, 23, 30, tzinfo=UTC)).number == "A001"
    assert desk.issue(at=T0 + timedelta(hours=2)).number == "A004"


def test_the_service_leases_past_device_blocks_and_moves_on_when_its_block_is_full(
    desk: Desk,
) -> None:
    seed = desk.seed
    with session_scope(desk.factory) as s:
        day = T0.date()
        common = {"tenant_id": seed.tenant_id, "branch_id": seed.branch_id, "business_day": day}
        s.add(NumberLease(**common, prefix="A", first=1, last=2, device_id=None))
        s.add(NumberLease(**common, prefix="A", first=3, last=52, device_id=seed.device_id))
    numbers = [desk.issue(at=T0 + timedelta(minutes=i)).number for i in range(4)]
    assert numbers == ["A001", "A002", "A053", "A054"]
    with session_scope(desk.factory) as s:
        own = s.execute(
            select(NumberLease.first, NumberLease.last)
            .where(NumberLease.device_id.is_(None))
            .order_by(NumberLease.first)
        ).all()
    assert own == [(1, 2), (53, 102)]


def test_concurrent_issuers_never_share_a_number(
    session_factory: sessionmaker[Session], seed: Seed
) -> None:
    shared, other_process = BranchStates(), BranchStates()
    issued: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def issuer(states: BranchStates) -> None:
        try:
            start.wait()
            for i in range(20):
                with session_scope(session_factory) as s:
                    view = issue_ticket(
                        s,
                        tenant_id=seed.tenant_id,
                        branch_id=seed.branch_id,
                        service_id=seed.accounts,
                        at=T0 + timedelta(seconds=i),
                        states=states,
                    )
                issued.append(view.number)
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=issuer, args=(s,)) for s in (shared, shared, shared)]
    threads.append(threading.Thread(target=issuer, args=(other_process,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(issued) == 80
    assert sorted(issued) == [str(TicketNumber("A", n)) for n in range(1, 81)]
    with session_scope(session_factory) as s:
        seqs = s.scalars(select(QueueEvent.server_seq).order_by(QueueEvent.server_seq)).all()
        assert seqs == list(range(1, 81))
        state = BranchStates().load(s, seed.tenant_id, seed.branch_id)
    assert len(state.waiting_in(seed.accounts)) == 80


# -- pushed events ---------------------------------------------------------------


def test_pushed_events_are_accepted_rejected_or_recognised_as_duplicates(
    desk: Desk,
) -> None:
    seed = desk.seed
    desk.run(cmd.OpenCounter(at=T0, counter_id=seed.c1))
    desk.run(cmd.OpenCounter(at=T0, counter_id=seed.c2))
    ticket = desk.issue()
    # Two consoles call the same ticket offline, each deciding on its own copy.
    console_events = []
    for n, counter in enumerate((seed.c1, seed.c2), start=1):
        with session_scope(desk.factory) as s:
            state = BranchStates().load(s, seed.tenant_id, seed.branch_id)
        [event] = decide(state, cmd.CallTicket(at=T0, counter_id=counter, ticket_id=str(ticket.id)))
        stamped = event.model_copy(update={"device_id": str(seed.device_id), "device_seq": n})
        apply(state, stamped)
        console_events.append(stamped)

    def push(events: list[EventBase]) -> list[queue.AppendResult]:
        with session_scope(desk.factory) as s:
            return append_events(
                s,
                tenant_id=seed.tenant_id,
                branch_id=seed.branch_id,
                events=events,
                states=desk.states,
            )

    first = push(console_events)
    assert [(r.status, r.server_seq) for r in first] == [("accepted", 4), ("rejected", None)]
    assert first[1].reason == "A001 was already called at Counter 1; it cannot be called"
    again = push([console_events[1], console_events[0]])
    assert [(r.status, r.server_seq, r.reason) for r in again] == [
        ("duplicate", None, first[1].reason),
        ("duplicate", 4, None),
    ]
    with session_scope(desk.factory) as s:
        rows = s.execute(
            select(QueueEvent.status, QueueEvent.server_seq, QueueEvent.reason).where(
                QueueEvent.id.in_([e.id for e in console_events])
            )
        ).all()
    assert sorted(rows, key=lambda r: r[0]) == [
        ("accepted", 4, None),
        ("rejected", None, first[1].reason),
    ]
    assert desk.view(ticket.id).counter_id == uuid.UUID(seed.c1)
    _projection_matches_state(desk)


def test_a_device_seq_already_stored_or_taken_earlier_in_the_batch_is_refused(
    desk: Desk,
) -> None:
    """A device's seq names one event: a new event reusing a stored one's (device, seq)
    is rejected with the reason (never an integrity error), and so is the second of
    two new events sharing one within a batch; seqs around them are untouched."""
    seed = desk.seed
    device = str(seed.device_id)

    numbers = iter(range(900, 999))

    def issued(seq: int) -> EventBase:
        with session_scope(desk.factory) as s:
            state = BranchStates().load(s, seed.tenant_id, seed.branch_id)
        command = cmd.IssueTicket(
            at=T0, service_id=seed.accounts, channel=Channel.WALK_IN,
            number=TicketNumber("A", next(numbers)), ticket_id=str(uuid.uuid4()),
        )  # fmt: skip
        [event] = decide(state, command)
        return event.model_copy(update={"device_id": device, "device_seq": seq})

    def push(events: list[EventBase]) -> list[queue.AppendResult]:
        with session_scope(desk.factory) as s:
            return append_events(
                s, tenant_id=seed.tenant_id, branch_id=seed.branch_id, events=events,
                states=desk.states,
            )  # fmt: skip

    assert [r.status for r in push([issued(n) for n in (3, 4, 5)])] == ["accepted"] * 3
    used = f"device_seq {{}} of device {device} is already used"
    # Stored seqs at either end of a batch's span and inside it.
    verdicts = [(r.status, r.reason) for r in push([issued(3), issued(6), issued(6)])]
    assert verdicts == [
        ("rejected", used.format(3)),
        ("accepted", None),
        ("rejected", used.format(6)),
    ]
    verdicts = [(r.status, r.reason) for r in push([issued(1), issued(4), issued(5)])]
    assert verdicts == [
        ("accepted", None),
        ("rejected", used.format(4)),
        ("rejected", used.format(5)),
    ]
    with session_scope(desk.factory) as s:
        stored = s.execute(
            select(QueueEvent.device_seq, func.count())
            .where(QueueEvent.device_id == seed.device_id)
            .group_by(QueueEvent.device_seq)
        ).all()
    assert sorted(stored) == [(1, 1), (3, 1), (4, 1), (5, 1), (6, 1)]
    _projection_matches_state(desk)


# -- the state cache -------------------------------------------------------------


def test_another_process_catches_up_with_events_written_by_the_first(
    session_factory: sessionmaker[Session], desk: Desk
) -> None:
    seed, elsewhere = desk.seed, BranchStates()
    desk.run(cmd.OpenCounter(at=T0, counter_id=seed.c1))
    with session_scope(session_factory) as s:
        theirs = elsewhere.load(s, seed.tenant_id, seed.branch_id)
    assert theirs.counters[seed.c1].status.value == "open"
    ticket = desk.issue()
    desk.run(cmd.CallNext(at=T0, counter_id=seed.c1))
    with session_scope(session_factory) as s:
        caught_up = elsewhere.load(s, seed.tenant_id, seed.branch_id)
        ours = desk.states.load(s, seed.tenant_id, seed.branch_id)
    assert caught_up is theirs  # folded the new events, not rebuilt
    assert caught_up.applied == ours.applied == 3
    assert caught_up.tickets[str(ticket.id)].status is TicketStatus.CALLED


def test_a_failure_after_folding_drops_the_cached_state(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = desk.seed
    desk.run(cmd.OpenCounter(at=T0, counter_id=seed.c1))
    before = desk.counts()

    def broken(*_args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(queue, "write_tickets", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        desk.issue()
    assert not desk.states.is_cached(seed.branch_id)
    monkeypatch.undo()
    assert desk.counts() == before
    assert desk.issue().number == "A001"
    _projection_matches_state(desk)


def test_a_transaction_rolled_back_after_the_call_is_not_believed(desk: Desk) -> None:
    seed = desk.seed
    with desk.factory() as s:
        issue_ticket(
            s,
            tenant_id=seed.tenant_id,
            branch_id=seed.branch_id,
            service_id=seed.accounts,
            at=T0,
            states=desk.states,
        )
        s.rollback()
    assert desk.states.is_cached(seed.branch_id)  # still holds the rolled-back ticket...
    view = desk.issue()  # ...but the log says otherwise: rebuilt, A001 again
    assert (view.number, view.position) == ("A001", 1)
    with session_scope(desk.factory) as s:
        assert len(desk.states.load(s, seed.tenant_id, seed.branch_id).tickets) == 1


def test_a_reader_never_sees_an_uncommitted_write(engine: Engine, desk: Desk) -> None:
    seed = desk.seed
    readers = make_session_factory(engine, read_only=True)
    with session_scope(desk.factory) as writer:
        issue_ticket(
            writer,
            tenant_id=seed.tenant_id,
            branch_id=seed.branch_id,
            service_id=seed.accounts,
            at=T0,
            states=desk.states,
        )
        with session_scope(readers) as s:
            private = desk.states.load(s, seed.tenant_id, seed.branch_id)
        cached = desk.states.load(writer, seed.tenant_id, seed.branch_id)
        assert (len(private.tickets), len(cached.tickets)) == (0, 1)
    with session_scope(readers) as s:
        assert desk.states.load(s, seed.tenant_id, seed.branch_id) is cached


def test_reference_data_changes_rebuild_the_state(desk: Desk) -> None:
    seed = desk.seed
    desk.issue()
    with session_scope(desk.factory) as s:
        new = Service(tenant_id=seed.tenant_id, branch_id=seed.branch_id, code="TX", name="Tax")
        s.add(new)
        s.flush()
        new_id = new.id
    assert desk.issue(new_id).number == "TX001"
    with session_scope(desk.factory) as s:
        state = desk.states.load(s, seed.tenant_id, seed.branch_id)
    assert len(state.tickets) == 2


def test_branch_config_is_reused_until_a_service_or_counter_changes(desk: Desk) -> None:
    seed = desk.seed

    def config() -> queue_state.BranchConfig:
        with session_scope(desk.factory) as s:
            return queue_state.read_config(
                s, queue_state.find_branch(s, seed.tenant_id, seed.branch_id)
            )

    first = config()
    assert config() is first  # unchanged rows: the same object, nothing rebuilt
    with session_scope(desk.factory) as s:
        counter = s.get(Counter, uuid.UUID(seed.c2))
        assert counter is not None
        counter.work_profile = [seed.loans]
    edited = config()
    assert edited is not first
    by_id = {c.id: c for c in edited.counters}
    assert by_id[seed.c2].work_profile == (seed.loans,)
    with session_scope(desk.factory) as s:
        service = s.get(Service, uuid.UUID(seed.accounts))
        assert service is not None
        service.name = "Current accounts"
    renamed = config()
    assert {c.id: c.name for c in renamed.services}[seed.accounts] == "Current accounts"
    assert renamed.counters == edited.counters


def test_a_service_switched_off_takes_no_tickets_until_switched_on(desk: Desk) -> None:
    seed = desk.seed
    desk.issue()

    def switch(active: bool) -> None:
        with session_scope(desk.factory) as s:
            service = s.get(Service, uuid.UUID(seed.accounts))
            assert service is not None
            service.active = active

    with session_scope(desk.factory) as s:
        before = desk.states.load(s, seed.tenant_id, seed.branch_id)
    switch(False)
    with pytest.raises(DomainError, match="Accounts is not taking tickets"):
        desk.issue()
    assert desk.issue(seed.loans).number == "L001"  # the other service still does
    switch(True)
    assert desk.issue().number == "A002"
    with session_scope(desk.factory) as s:
        # Switching a service off and on again did not rebuild the branch state.
        assert desk.states.load(s, seed.tenant_id, seed.branch_id) is before


def test_queue_state_module_keeps_one_cache_per_process() -> None:
    assert isinstance(queue_state.BRANCH_STATES, BranchStates)


# -- views -----------------------------------------------------------------------


def test_position_and_estimated_wait_on_a_small_branch(desk: Desk) -> None:
    seed = desk.seed
    assert desk.issue().estimated_wait_s == 300  # position 1, no history, no open counter
    desk.run(cmd.OpenCounter(at=T0, counter_id=seed.c1))
    # Three completions of 100, 200 and 600 s: median 200 s.
    t = T0
    for seconds in (100, 200, 600):
        [called] = desk.run(cmd.CallNext(at=t, counter_id=seed.c1))
        ticket_id = called.model_dump()["ticket_id"]
        desk.run(cmd.StartService(at=t, ticket_id=ticket_id))
        t += timedelta(seconds=seconds)
        desk.run(cmd.Complete(at=t, ticket_id=ticket_id))
        if seconds != 600:
            desk.issue(at=t)
    waiting = [desk.issue(at=t + timedelta(seconds=i)) for i in range(3)]
    # One open counter serving accounts: position × 200.
    assert [(v.position, v.estimated_wait_s) for v in waiting] == [(1, 200), (2, 400), (3, 600)]
    desk.run(cmd.OpenCounter(at=t, counter_id=seed.c2))
    third = desk.view(waiting[2].id)
    assert (third.position, third.estimated_wait_s) == (3, 300)  # 3 × 200 / 2 counters
    # A loans ticket: counter 1 serves loans too, counter 2 does not; no loans history.
    loans = desk.issue(seed.loans, at=t)
    assert (loans.position, loans.estimated_wait_s) == (1, 300)


def test_a_pushed_events_payload_is_stored_as_its_json_on_either_backend(desk: Desk) -> None:
    """The log's payload is the event's JSON (on SQLite written by pydantic-core, compact
    and with text outside ASCII as it is): read back it is the event's dict, absent
    fields left out, and it parses back to the same event."""
    seed = desk.seed
    with session_scope(desk.factory) as s:
        state = BranchStates().load(s, seed.tenant_id, seed.branch_id)
    command = cmd.IssueTicket(
        at=datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=1))),
        service_id=seed.accounts,
        number=TicketNumber("A", 7),
        customer=Customer(name="Zoë Ñúñez \U0001f600", notes='says "hi"\n\\ and \u2028 too'),
        ticket_id=str(uuid.uuid4()),
    )
    [decided] = decide(state, command)
    event = decided.model_copy(update={"device_id": str(seed.device_id), "device_seq": 1})
    with session_scope(desk.factory) as s:
        [result] = append_events(
            s, tenant_id=seed.tenant_id, branch_id=seed.branch_id, events=[event],
            states=desk.states,
        )  # fmt: skip
    assert result.status == "accepted"
    with session_scope(desk.factory) as s:
        payload = s.scalars(select(QueueEvent.payload).where(QueueEvent.id == event.id)).one()
        text = s.scalars(
            select(cast(QueueEvent.payload, Text)).where(QueueEvent.id == event.id)
        ).one()
    assert payload == event_to_dict(event)
    assert "email" not in payload["customer"]
    assert "appointment_at" not in payload
    assert parse_event(text) == event
    assert json.loads(text) == payload
