"""The ticket state machine: every command in every ticket and counter status.

Each accepted transition is checked for its events and the resulting state; each
refused one for its exact message and for leaving the state untouched (``Desk``
compares snapshots). ``decide`` must never change the state, which ``Desk.run``
checks on every command.
"""

from datetime import UTC, datetime, timedelta

import pytest

from core import commands as cmd
from core.errors import DomainError, InvalidValue, UnknownCounter, UnknownService, UnknownTicket
from core.events import (
    CounterClosed,
    CounterOpened,
    CounterPaused,
    CounterResumed,
    Customer,
    ServiceStarted,
    TicketCalled,
    TicketCancelled,
    TicketCompleted,
    TicketIssued,
    TicketNoShow,
    TicketParked,
    TicketRecalled,
    TicketReturned,
    TicketTransferred,
)
from core.machine import apply, decide, replay
from core.state import CounterStatus, TicketStatus
from core.values import Channel, Outcome, PriorityClass, TicketNumber, TransferPosition
from tests.unit.core.builders import (
    ACCOUNTS,
    ACTOR,
    BRANCH_ID,
    C1,
    C2,
    C3,
    LOANS,
    T0,
    TAX,
    Desk,
    new_branch,
    snapshot,
)

S = TicketStatus
FRONT, BACK, ORIGINAL = TransferPosition.FRONT, TransferPosition.BACK, TransferPosition.ORIGINAL
NORMAL, PRIO, URGENT = PriorityClass.NORMAL, PriorityClass.PRIORITY, PriorityClass.URGENT

# -- ticket commands × ticket status ------------------------------------------------

# How each status reads in a refusal, for ticket A042 that was called at Counter 3.
DESCRIBED = {
    S.WAITING: "A042 is waiting",
    S.CALLED: "A042 was already called at Counter 3",
    S.SERVING: "A042 is being served at Counter 3",
    S.PARKED: "A042 is parked",
    S.DONE: "A042 has already been completed",
    S.NO_SHOW: "A042 was marked as a no-show",
    S.CANCELLED: "A042 was cancelled",
}

TICKET_COMMANDS = {
    # name: (command for ticket t at time `at`, verb in the refusal)
    "call": (lambda t, at: cmd.CallTicket(at=at, counter_id=C1, ticket_id=t.id), "called"),
    "recall": (lambda t, at: cmd.Recall(at=at, ticket_id=t.id), "recalled"),
    "start": (lambda t, at: cmd.StartService(at=at, ticket_id=t.id), "started"),
    "complete": (
        lambda t, at: cmd.Complete(at=at, ticket_id=t.id, outcome=Outcome.REFERRED),
        "completed",
    ),
    "no_show": (lambda t, at: cmd.MarkNoShow(at=at, ticket_id=t.id), "marked as a no-show"),
    "transfer": (
        lambda t, at: cmd.Transfer(at=at, ticket_id=t.id, to_service_id=LOANS, position=BACK),
        "transferred",
    ),
    "park": (lambda t, at: cmd.Park(at=at, ticket_id=t.id, note="fetching ID"), "parked"),
    "return": (lambda t, at: cmd.ReturnTicket(at=at, ticket_id=t.id), "returned to the queue"),
    "cancel": (lambda t, at: cmd.Cancel(at=at, ticket_id=t.id, reason="left"), "cancelled"),
}

# (command, status) -> (event types, resulting status, counter now holding the ticket)
ACCEPTED = {
    ("call", S.WAITING): (["ticket.called"], S.CALLED, C1),
    ("recall", S.CALLED): (["ticket.recalled"], S.CALLED, C3),
    ("start", S.CALLED): (["ticket.service_started"], S.SERVING, C3),
    ("complete", S.CALLED): (["ticket.service_started", "ticket.completed"], S.DONE, None),
    ("complete", S.SERVING): (["ticket.completed"], S.DONE, None),
    ("no_show", S.CALLED): (["ticket.no_show"], S.NO_SHOW, None),
    ("transfer", S.WAITING): (["ticket.transferred"], S.WAITING, None),
    ("transfer", S.CALLED): (["ticket.transferred"], S.WAITING, None),
    ("transfer", S.SERVING): (["ticket.transferred"], S.WAITING, None),
    ("park", S.CALLED): (["ticket.parked"], S.PARKED, None),
    ("park", S.SERVING): (["ticket.parked"], S.PARKED, None),
    ("return", S.PARKED): (["ticket.returned"], S.WAITING, None),
    ("cancel", S.WAITING): (["ticket.cancelled"], S.CANCELLED, None),
    ("cancel", S.CALLED): (["ticket.cancelled"], S.CANCELLED, None),
    ("cancel", S.PARKED): (["ticket.cancelled"], S.CANCELLED, None),
}
CELLS = [(name, status) for name in TICKET_COMMANDS for status in TicketStatus]
REJECTED = [cell for cell in CELLS if cell not in ACCEPTED]


def test_the_tables_cover_every_status_and_the_statuses_are_the_designed_ones():
    assert {s.value for s in TicketStatus} == {
        "waiting",
        "called",
        "serving",
        "parked",
        "done",
        "no_show",
        "cancelled",
    }
    assert set(DESCRIBED) == set(TicketStatus)
    assert set(ACCEPTED) <= set(CELLS)  # no misspelt command or status in the table


@pytest.mark.parametrize(("name", "status"), list(ACCEPTED), ids=lambda v: str(v))
def test_accepted_ticket_transition(desk, name, status):
    ticket = desk.ticket_in(status)
    desk.open(C1)
    at = desk.tick()
    make, _ = TICKET_COMMANDS[name]
    expected_types, new_status, holder = ACCEPTED[(name, status)]

    events = desk.run(make(ticket, at))

    assert [e.type for e in events] == expected_types
    for event in events:
        assert event.ticket_id == ticket.id
        assert (event.branch_id, event.occurred_at) == (BRANCH_ID, at)
    assert len({e.id for e in events}) == len(events)
    assert ticket.status is new_status
    counters = desk.state.counters
    if holder is None:
        assert counters[C3].current_ticket_id is None
        assert counters[C1].current_ticket_id is None
    else:
        assert counters[holder].current_ticket_id == ticket.id
        assert ticket.counter_id == holder
    waiting_ids = [t.id for t in desk.state.waiting_in(ticket.service_id)]
    assert (ticket.id in waiting_ids) == (new_status is S.WAITING)
    assert (ticket.queue_key is not None) == (new_status is S.WAITING)
    if new_status in (S.DONE, S.NO_SHOW, S.CANCELLED):
        assert ticket.finished_at == at
    else:
        assert ticket.finished_at is None


@pytest.mark.parametrize(("name", "status"), REJECTED, ids=lambda v: str(v))
def test_rejected_ticket_transition_names_the_ticket_and_the_reason(desk, name, status):
    ticket = desk.ticket_in(status)
    desk.open(C1)
    make, verb = TICKET_COMMANDS[name]

    error = desk.reject(make(ticket, desk.tick()), DomainError)

    assert str(error) == f"{DESCRIBED[status]}; it cannot be {verb}"
    assert ticket.status is status


def test_calling_a_ticket_being_served_names_the_counter():
    desk = Desk()
    ticket = desk.ticket_in(S.SERVING)
    desk.open(C1)
    error = desk.reject(cmd.CallTicket(at=desk.tick(), counter_id=C1, ticket_id=ticket.id))
    assert str(error) == "A042 is being served at Counter 3; it cannot be called"


# The same refusals when a device pushes the event itself: apply checks before it folds.
PUSHED = {
    "call": lambda d, t: TicketCalled(**d.meta(), ticket_id=t.id, counter_id=C1),
    "recall": lambda d, t: TicketRecalled(**d.meta(), ticket_id=t.id, counter_id=C3),
    "start": lambda d, t: ServiceStarted(**d.meta(), ticket_id=t.id, counter_id=C3),
    "complete": lambda d, t: TicketCompleted(**d.meta(), ticket_id=t.id, counter_id=C3),
    "no_show": lambda d, t: TicketNoShow(**d.meta(), ticket_id=t.id, counter_id=C3),
    "transfer": lambda d, t: TicketTransferred(
        **d.meta(),
        ticket_id=t.id,
        from_service_id=ACCOUNTS,
        to_service_id=LOANS,
        counter_id=t.counter_id,
    ),
    "park": lambda d, t: TicketParked(**d.meta(), ticket_id=t.id, counter_id=C3),
    "return": lambda d, t: TicketReturned(**d.meta(), ticket_id=t.id),
    "cancel": lambda d, t: TicketCancelled(**d.meta(), ticket_id=t.id),
}


@pytest.mark.parametrize(("name", "status"), REJECTED, ids=lambda v: str(v))
def test_apply_refuses_an_invalid_event_and_leaves_the_state_unchanged(desk, name, status):
    ticket = desk.ticket_in(status)
    desk.open(C1)
    applied = desk.state.applied
    error = desk.reject_event(PUSHED[name](desk, ticket), DomainError)
    assert str(error) == f"{DESCRIBED[status]}; it cannot be {TICKET_COMMANDS[name][1]}"
    assert desk.state.applied == applied


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("recall", S.CALLED, "A042 was already called at Counter 3, not at Counter 2"),
        ("start", S.CALLED, "A042 was already called at Counter 3, not at Counter 2"),
        ("complete", S.SERVING, "A042 is being served at Counter 3, not at Counter 2"),
        ("no_show", S.CALLED, "A042 was already called at Counter 3, not at Counter 2"),
        ("park", S.SERVING, "A042 is being served at Counter 3, not at Counter 2"),
    ],
)
def test_apply_refuses_an_event_from_the_wrong_counter(desk, name, status, message):
    ticket = desk.ticket_in(status)
    event = PUSHED[name](desk, ticket).model_copy(update={"counter_id": C2})
    assert str(desk.reject_event(event, DomainError)) == message


def test_apply_refuses_a_transfer_that_claims_no_counter_for_a_called_ticket(desk):
    ticket = desk.ticket_in(S.CALLED)
    event = PUSHED["transfer"](desk, ticket).model_copy(update={"counter_id": None})
    error = desk.reject_event(event, DomainError)
    assert str(error) == "A042 was already called at Counter 3, not at no counter"


def test_apply_refuses_a_transfer_from_a_service_the_ticket_is_not_in(desk):
    ticket = desk.ticket_in(S.WAITING)
    event = PUSHED["transfer"](desk, ticket).model_copy(
        update={"from_service_id": TAX, "to_service_id": LOANS}
    )
    assert str(desk.reject_event(event, DomainError)) == f"A042 is not in service {TAX}"


# -- counter commands × counter status --------------------------------------------

COUNTER_STATUSES = ["closed", "open", "paused", "busy"]
FIRST = "tkt-first"

COUNTER_COMMANDS = {
    "open": lambda at: cmd.OpenCounter(at=at, actor_id=ACTOR, counter_id=C3),
    "close": lambda at: cmd.CloseCounter(at=at, counter_id=C3),
    "pause": lambda at: cmd.PauseCounter(at=at, counter_id=C3, reason="  system update "),
    "resume": lambda at: cmd.ResumeCounter(at=at, counter_id=C3),
    "call_next": lambda at: cmd.CallNext(at=at, counter_id=C3),
    "call": lambda at: cmd.CallTicket(at=at, counter_id=C3, ticket_id=FIRST),
}

# (command, counter status) -> (event types, resulting counter status, pause reason)
COUNTER_ACCEPTED = {
    ("open", "closed"): (["counter.opened"], CounterStatus.OPEN, None),
    ("close", "open"): (["counter.closed"], CounterStatus.CLOSED, None),
    ("close", "paused"): (["counter.closed"], CounterStatus.CLOSED, None),
    ("pause", "open"): (["counter.paused"], CounterStatus.PAUSED, "system update"),
    ("resume", "paused"): (["counter.resumed"], CounterStatus.OPEN, None),
    ("call_next", "open"): (["ticket.called"], CounterStatus.OPEN, None),
    ("call", "open"): (["ticket.called"], CounterStatus.OPEN, None),
}

BUSY = "Counter 3 is still on A042; complete, transfer or park it before calling another"
COUNTER_REJECTED = {
    ("open", "open"): "Counter 3 is already open",
    ("open", "paused"): "Counter 3 is paused; resume it instead of opening it",
    ("open", "busy"): "Counter 3 is already open",
    ("close", "closed"): "Counter 3 is already closed",
    ("close", "busy"): "Counter 3 still has A042; complete, transfer or park it before closing",
    ("pause", "closed"): "Counter 3 is closed; only an open counter pauses",
    ("pause", "paused"): "Counter 3 is paused; only an open counter pauses",
    ("pause", "busy"): "Counter 3 still has A042; complete, transfer or park it before pausing",
    ("resume", "closed"): "Counter 3 is closed, not paused",
    ("resume", "open"): "Counter 3 is open, not paused",
    ("resume", "busy"): "Counter 3 is open, not paused",
    ("call_next", "closed"): "Counter 3 is closed; open it before calling a ticket",
    ("call_next", "paused"): "Counter 3 is paused (lunch); resume it before calling a ticket",
    ("call_next", "busy"): BUSY,
    ("call", "closed"): "Counter 3 is closed; open it before calling a ticket",
    ("call", "paused"): "Counter 3 is paused (lunch); resume it before calling a ticket",
    ("call", "busy"): BUSY,
}


def test_the_counter_tables_cover_every_command_and_status():
    cells = {(c, s) for c in COUNTER_COMMANDS for s in COUNTER_STATUSES}
    assert cells == set(COUNTER_ACCEPTED) | set(COUNTER_REJECTED)
    assert not set(COUNTER_ACCEPTED) & set(COUNTER_REJECTED)


def counter_desk(status):
    desk = Desk()
    desk.issue(ACCOUNTS, "A001", ticket_id=FIRST)  # waiting, so calls have something to call
    counter = desk.counter_in(status)
    return desk, counter


@pytest.mark.parametrize(("name", "status"), list(COUNTER_ACCEPTED), ids=lambda v: str(v))
def test_accepted_counter_transition(name, status):
    desk, counter = counter_desk(status)
    types, new_status, reason = COUNTER_ACCEPTED[(name, status)]
    events = desk.run(COUNTER_COMMANDS[name](desk.tick()))
    assert [e.type for e in events] == types
    assert counter.status is new_status
    assert counter.pause_reason == reason
    if name == "open":
        assert counter.staff_id == ACTOR
    if name == "close":
        assert counter.staff_id is None
    if name.startswith("call"):
        assert counter.current_ticket_id == FIRST
        assert desk.state.tickets[FIRST].status is S.CALLED
    else:
        assert counter.current_ticket_id is None


@pytest.mark.parametrize(("name", "status"), list(COUNTER_REJECTED), ids=lambda v: str(v))
def test_rejected_counter_transition_names_the_counter_and_the_reason(name, status):
    desk, _ = counter_desk(status)
    error = desk.reject(COUNTER_COMMANDS[name](desk.tick()), DomainError)
    assert str(error) == COUNTER_REJECTED[(name, status)]


@pytest.mark.parametrize("reason", ["", "   ", "\t\n"])
def test_pausing_needs_a_reason(desk, reason):
    desk.open(C3)
    error = desk.reject(cmd.PauseCounter(at=desk.tick(), counter_id=C3, reason=reason))
    assert isinstance(error, InvalidValue)
    assert error.field == "reason"
    assert error.message == "pausing Counter 3 needs a reason"


def test_a_pushed_pause_with_a_blank_reason_is_refused(desk):
    desk.open(C3)
    event = CounterPaused(**desk.meta(), counter_id=C3, reason="  ")
    assert str(desk.reject_event(event, DomainError)) == "Pausing Counter 3 needs a reason"


def test_an_over_long_pause_reason_is_invalid_input(desk):
    desk.open(C3)
    error = desk.reject(cmd.PauseCounter(at=desk.tick(), counter_id=C3, reason="x" * 201))
    assert isinstance(error, InvalidValue)
    assert error.field == "reason"
    assert "at most 200 characters" in error.message


def test_counter_lifecycle_open_pause_resume_close(desk):
    desk.open(C2)
    desk.pause(C2, "training")
    counter = desk.state.counters[C2]
    assert (counter.status, counter.pause_reason) == (CounterStatus.PAUSED, "training")
    desk.run(cmd.ResumeCounter(at=desk.tick(), counter_id=C2))
    assert (counter.status, counter.pause_reason) == (CounterStatus.OPEN, None)
    desk.run(cmd.CloseCounter(at=desk.tick(), counter_id=C2))
    assert counter.status is CounterStatus.CLOSED
    assert [e.type for e in desk.log] == [
        "counter.opened",
        "counter.paused",
        "counter.resumed",
        "counter.closed",
    ]


def test_a_counter_can_close_after_its_ticket_is_done(desk):
    ticket = desk.ticket_in(S.SERVING)
    desk.reject(cmd.CloseCounter(at=desk.tick(), counter_id=C3), DomainError)
    desk.complete(ticket)
    desk.run(cmd.CloseCounter(at=desk.tick(), counter_id=C3))
    assert desk.state.counters[C3].status is CounterStatus.CLOSED


# -- unknown ids -------------------------------------------------------------------

MISSING = "tkt-missing"


@pytest.mark.parametrize(
    "make",
    [
        lambda at: cmd.CallTicket(at=at, counter_id=C1, ticket_id=MISSING),
        lambda at: cmd.Recall(at=at, ticket_id=MISSING),
        lambda at: cmd.StartService(at=at, ticket_id=MISSING),
        lambda at: cmd.Complete(at=at, ticket_id=MISSING),
        lambda at: cmd.MarkNoShow(at=at, ticket_id=MISSING),
        lambda at: cmd.Transfer(at=at, ticket_id=MISSING, to_service_id=LOANS),
        lambda at: cmd.Park(at=at, ticket_id=MISSING),
        lambda at: cmd.ReturnTicket(at=at, ticket_id=MISSING),
        lambda at: cmd.Cancel(at=at, ticket_id=MISSING),
    ],
    ids=lambda make: type(make(T0)).__name__,
)
def test_unknown_ticket_is_refused(desk, make):
    desk.open(C1)
    error = desk.reject(make(desk.tick()), UnknownTicket)
    assert str(error) == f"There is no ticket {MISSING} in this branch"


@pytest.mark.parametrize(
    "make",
    [
        lambda at, t: cmd.CallNext(at=at, counter_id="ctr-9"),
        lambda at, t: cmd.CallTicket(at=at, counter_id="ctr-9", ticket_id=t.id),
        lambda at, t: cmd.OpenCounter(at=at, counter_id="ctr-9"),
        lambda at, t: cmd.CloseCounter(at=at, counter_id="ctr-9"),
        lambda at, t: cmd.PauseCounter(at=at, counter_id="ctr-9", reason="lunch"),
        lambda at, t: cmd.PauseCounter(at=at, counter_id="ctr-9", reason=""),
        lambda at, t: cmd.ResumeCounter(at=at, counter_id="ctr-9"),
    ],
    ids=["call_next", "call", "open", "close", "pause", "pause_blank", "resume"],
)
def test_unknown_counter_is_refused(desk, make):
    ticket = desk.issue()
    error = desk.reject(make(desk.tick(), ticket), UnknownCounter)
    assert str(error) == "There is no counter ctr-9 in this branch"


def test_unknown_service_is_refused_for_issue_and_transfer(desk):
    issue = cmd.IssueTicket(at=desk.tick(), service_id="svc-x", number=TicketNumber.parse("A1"))
    assert str(desk.reject(issue, UnknownService)) == "There is no service svc-x in this branch"
    ticket = desk.issue()
    transfer = cmd.Transfer(at=desk.tick(), ticket_id=ticket.id, to_service_id="svc-x")
    assert str(desk.reject(transfer, UnknownService)) == "There is no service svc-x in this branch"


def test_lookups_by_number_name_the_number_and_day(desk):
    ticket = desk.issue(ACCOUNTS, "A042")
    assert desk.state.ticket_by_number(ticket.business_day, "A042") is ticket
    with pytest.raises(UnknownTicket, match=r"^There is no ticket A043 on 2024-03-01$"):
        desk.state.ticket_by_number(ticket.business_day, "A043")


# -- issuing -----------------------------------------------------------------------


def test_issue_creates_a_waiting_ticket_at_the_back_of_its_queue(desk):
    first = desk.issue(ACCOUNTS)
    customer = Customer(name="Ada", email="ada@example.com", phone="+49 151 23456789")
    at = desk.tick()
    (event,) = desk.run(
        cmd.IssueTicket(
            at=at,
            actor_id=ACTOR,
            service_id=ACCOUNTS,
            number=TicketNumber.parse("a42"),
            channel=Channel.REMOTE,
            priority=PRIO,
            customer=customer,
            ticket_id="tkt-42",
        )
    )
    assert isinstance(event, TicketIssued)
    assert (event.ticket_id, event.number, event.priority) == ("tkt-42", "A042", 1)
    assert (event.actor_id, event.occurred_at, event.branch_id) == (ACTOR, at, BRANCH_ID)
    ticket = desk.state.tickets["tkt-42"]
    assert ticket.status is S.WAITING
    assert (ticket.service_id, ticket.channel, ticket.priority) == (ACCOUNTS, Channel.REMOTE, PRIO)
    assert ticket.business_day.isoformat() == "2024-03-01"
    assert ticket.issued_at == ticket.segment_started_at == at
    assert ticket.customer is not None
    assert ticket.customer.phone == "+4915123456789"
    assert ticket.counter_id is None
    assert desk.order(ACCOUNTS) == ["A042", first.number]  # priority class ahead
    assert desk.state.position(ticket) == 1
    assert desk.state.position(first) == 2


def test_issue_without_ticket_id_makes_a_fresh_uuid7(desk):
    a, b = desk.issue(), desk.issue()
    assert a.id != b.id
    assert len(a.id) == 36
    assert a.id[14] == "7"


def test_business_day_of_a_ticket_is_local_to_the_branch():
    desk = Desk(now=datetime(2024, 3, 1, 22, 58, tzinfo=UTC))  # 23:59 in Berlin once issued
    assert desk.issue().business_day.isoformat() == "2024-03-01"
    assert desk.issue().business_day.isoformat() == "2024-03-02"  # 00:00 in Berlin


def test_duplicate_number_is_refused_on_the_same_business_day_but_not_the_next():
    # The branch's day starts at 04:00, so 02:30 the next night is still the same day.
    desk = Desk(new_branch(day_starts_at_min=240))
    first = desk.issue(ACCOUNTS, "A042")
    number = TicketNumber.parse("A042")
    night = datetime(2024, 3, 2, 1, 30, tzinfo=UTC)  # 02:30 in Berlin
    error = desk.reject(cmd.IssueTicket(at=night, service_id=ACCOUNTS, number=number))
    assert type(error) is DomainError
    assert str(error) == "A042 has already been issued on 2024-03-01"

    morning = datetime(2024, 3, 2, 3, 0, tzinfo=UTC)  # 04:00 in Berlin: a new business day
    (event,) = desk.run(cmd.IssueTicket(at=morning, service_id=ACCOUNTS, number=number))
    second = desk.state.tickets[event.ticket_id]
    assert second.business_day.isoformat() == "2024-03-02"
    assert desk.state.ticket_by_number(first.business_day, "A042") is first
    assert desk.state.ticket_by_number(second.business_day, "A042") is second


def test_same_number_in_another_prefix_is_a_different_number(desk):
    desk.issue(ACCOUNTS, "A001")
    assert desk.issue(LOANS, "L001").number == "L001"


def test_number_prefix_must_match_the_service(desk):
    issue = cmd.IssueTicket(at=desk.tick(), service_id=ACCOUNTS, number=TicketNumber.parse("L7"))
    assert str(desk.reject(issue, DomainError)) == "L007 does not belong to Accounts (prefix A)"


def test_duplicate_ticket_id_is_refused(desk):
    desk.issue()
    issue = cmd.IssueTicket(
        at=desk.tick(),
        service_id=ACCOUNTS,
        number=TicketNumber.parse("A9"),
        ticket_id=desk.log[0].ticket_id,
    )
    error = desk.reject(issue, DomainError)
    assert str(error) == f"Ticket {desk.log[0].ticket_id} has already been issued"


def test_appointment_channel_needs_an_appointment_time(desk):
    issue = cmd.IssueTicket(
        at=desk.tick(),
        service_id=ACCOUNTS,
        number=TicketNumber.parse("A5"),
        channel=Channel.APPOINTMENT,
    )
    error = desk.reject(issue, DomainError)
    assert str(error) == "A005 is an appointment ticket; it needs an appointment time"


@pytest.mark.parametrize(
    ("channel", "kind"), [(Channel.WALK_IN, "walk-in"), (Channel.REMOTE, "remote")]
)
def test_only_appointment_tickets_have_an_appointment_time(desk, channel, kind):
    issue = cmd.IssueTicket(
        at=desk.tick(),
        service_id=ACCOUNTS,
        number=TicketNumber.parse("A5"),
        channel=channel,
        appointment_at=desk.now + timedelta(hours=1),
    )
    error = desk.reject(issue, DomainError)
    assert str(error) == (
        f"A005 is a {kind} ticket; only appointment tickets have an appointment time"
    )


def test_naive_appointment_time_is_invalid_input(desk):
    issue = cmd.IssueTicket(
        at=desk.tick(),
        service_id=ACCOUNTS,
        number=TicketNumber.parse("A5"),
        channel=Channel.APPOINTMENT,
        appointment_at=datetime(2024, 3, 1, 11, 0),
    )
    error = desk.reject(issue, InvalidValue)
    assert error.field == "appointment_at"
    assert error.message == "'2024-03-01 11:00:00': Input should have timezone info"


# -- naive clocks, non-commands, decide without side effects -------------------------

NAIVE = datetime(2024, 3, 1, 10, 0)
ALL_COMMANDS = [
    lambda at: cmd.IssueTicket(at=at, service_id=ACCOUNTS, number=TicketNumber.parse("A1")),
    lambda at: cmd.CallNext(at=at, counter_id=C1),
    lambda at: cmd.CallTicket(at=at, counter_id=C1, ticket_id="t"),
    lambda at: cmd.Recall(at=at, ticket_id="t"),
    lambda at: cmd.StartService(at=at, ticket_id="t"),
    lambda at: cmd.Complete(at=at, ticket_id="t"),
    lambda at: cmd.MarkNoShow(at=at, ticket_id="t"),
    lambda at: cmd.Transfer(at=at, ticket_id="t", to_service_id=LOANS),
    lambda at: cmd.Park(at=at, ticket_id="t"),
    lambda at: cmd.ReturnTicket(at=at, ticket_id="t"),
    lambda at: cmd.Cancel(at=at, ticket_id="t"),
    lambda at: cmd.OpenCounter(at=at, counter_id=C1),
    lambda at: cmd.CloseCounter(at=at, counter_id=C1),
    lambda at: cmd.PauseCounter(at=at, counter_id=C1, reason="lunch"),
    lambda at: cmd.ResumeCounter(at=at, counter_id=C1),
]


@pytest.mark.parametrize("make", ALL_COMMANDS, ids=lambda make: type(make(T0)).__name__)
def test_a_command_with_a_naive_time_is_refused(desk, make):
    error = desk.reject(make(NAIVE), InvalidValue)
    assert error.field == "at"
    assert "timezone-aware" in error.message


def test_decide_refuses_something_that_is_not_a_command(desk):
    with pytest.raises(TypeError, match="not a queue command: Command"):
        decide(desk.state, cmd.Command(at=T0))


def test_decide_never_changes_the_state_even_for_the_two_event_completion(desk):
    ticket = desk.ticket_in(S.CALLED)
    before = snapshot(desk.state)
    first = decide(desk.state, cmd.Complete(at=desk.tick(), ticket_id=ticket.id))
    second = decide(desk.state, cmd.Complete(at=desk.tick(), ticket_id=ticket.id))
    assert snapshot(desk.state) == before
    assert [e.type for e in first] == [e.type for e in second]
    assert ticket.status is S.CALLED


def test_replay_of_the_log_rebuilds_the_same_state(desk):
    desk.open(C1, C3)
    for _ in range(3):
        desk.issue(ACCOUNTS)
        desk.issue(LOANS, priority=PRIO)
    served = desk.call_next(C1)
    desk.complete(served)
    parked = desk.call_next(C3)
    desk.park(parked)
    desk.transfer(desk.state.waiting_in(LOANS)[0], ACCOUNTS, FRONT)
    desk.return_(parked)
    rebuilt = replay(new_branch(), desk.log)
    assert snapshot(rebuilt) == snapshot(desk.state)
    assert rebuilt.applied == len(desk.log)


# -- call-next order -------------------------------------------------------------------


def test_call_next_takes_the_earliest_join_within_one_class(desk):
    desk.open(C1, C3)
    first, second, _ = (desk.issue(ACCOUNTS) for _ in range(3))
    assert desk.call_next(C1) is first
    assert desk.call_next(C3) is second


def test_call_next_takes_the_highest_priority_class_first(desk):
    desk.open(C1)
    desk.issue(ACCOUNTS, "A001")
    desk.issue(ACCOUNTS, "A002", priority=PRIO)
    desk.issue(ACCOUNTS, "A003", priority=URGENT)
    desk.issue(ACCOUNTS, "A004", priority=PRIO)
    called = []
    for _ in range(4):
        ticket = desk.call_next(C1)
        called.append(ticket.number)
        desk.complete(ticket)
    assert called == ["A003", "A002", "A004", "A001"]


def test_call_next_chooses_across_the_work_profile_and_ignores_other_services(desk):
    desk.open(C1)  # Accounts and Loans
    desk.issue(TAX, "TX001")
    desk.issue(LOANS, "L001")
    desk.issue(ACCOUNTS, "A001")
    desk.issue(ACCOUNTS, "A002", priority=PRIO)
    desk.issue(LOANS, "L002")
    called = []
    for _ in range(4):
        ticket = desk.call_next(C1)
        called.append(ticket.number)
        desk.complete(ticket)
    assert called == ["A002", "L001", "A001", "L002"]
    assert desk.order(TAX) == ["TX001"]


def test_call_next_with_an_empty_queue_names_the_counter_and_its_services(desk):
    desk.open(C1)
    desk.issue(TAX)  # not in Counter 1's work profile
    error = desk.reject(cmd.CallNext(at=desk.tick(), counter_id=C1), DomainError)
    assert str(error) == "No tickets are waiting for Counter 1 (Accounts, Loans)"


def test_due_appointment_goes_before_earlier_walk_ins_of_its_class(desk):
    desk.open(C1)
    desk.issue(ACCOUNTS, "A001")
    desk.issue(ACCOUNTS, "A002", channel=Channel.APPOINTMENT, appointment_at=desk.now)
    assert desk.call_next(C1).number == "A002"


def test_not_yet_due_appointment_waits_by_join_time(desk):
    desk.open(C1, C3)
    desk.issue(ACCOUNTS, "A001")
    later = desk.now + timedelta(hours=1)
    desk.issue(ACCOUNTS, "A002", channel=Channel.APPOINTMENT, appointment_at=later)
    desk.issue(ACCOUNTS, "A003")
    assert desk.call_next(C1).number == "A001"
    assert desk.call_next(C3).number == "A002"  # first by join time, though not yet due


def test_appointment_becomes_due_with_the_clock(desk):
    desk.open(C1)
    desk.issue(ACCOUNTS, "A001")
    due = desk.now + timedelta(minutes=30)
    desk.issue(ACCOUNTS, "A002", channel=Channel.APPOINTMENT, appointment_at=due)
    desk.tick(10)
    events = decide(desk.state, cmd.CallNext(at=desk.now, counter_id=C1))
    assert desk.state.tickets[events[0].ticket_id].number == "A001"
    desk.tick(30)
    assert desk.call_next(C1).number == "A002"


def test_due_appointments_are_called_by_appointment_time_across_services(desk):
    desk.open(C1)
    now = desk.now
    desk.issue(
        ACCOUNTS, "A001", channel=Channel.APPOINTMENT, appointment_at=now - timedelta(minutes=5)
    )
    desk.issue(
        LOANS, "L001", channel=Channel.APPOINTMENT, appointment_at=now - timedelta(minutes=20)
    )
    desk.issue(ACCOUNTS, "A002")
    called = []
    for _ in range(3):
        ticket = desk.call_next(C1)
        called.append(ticket.number)
        desk.complete(ticket)
    assert called == ["L001", "A001", "A002"]


def test_a_due_appointment_does_not_jump_a_higher_priority_class(desk):
    desk.open(C1)
    desk.issue(ACCOUNTS, "A001", channel=Channel.APPOINTMENT, appointment_at=desk.now)
    desk.issue(LOANS, "L001", priority=PRIO)
    assert desk.call_next(C1).number == "L001"


def test_call_a_specific_ticket_out_of_order(desk):
    desk.open(C1)
    first, second, third = (desk.issue(ACCOUNTS) for _ in range(3))
    at = desk.tick()
    (event,) = desk.run(cmd.CallTicket(at=at, actor_id=ACTOR, counter_id=C1, ticket_id=third.id))
    assert isinstance(event, TicketCalled)
    assert (event.ticket_id, event.counter_id, event.actor_id) == (third.id, C1, ACTOR)
    assert third.status is S.CALLED
    assert third.called_at == at
    assert desk.state.counters[C1].current_ticket_id == third.id
    assert desk.order(ACCOUNTS) == [first.number, second.number]
    assert desk.state.position(third) is None


# -- serving -----------------------------------------------------------------------------


def test_recall_counts_and_keeps_the_ticket_at_its_counter(desk):
    ticket = desk.ticket_in(S.CALLED)
    for expected in (1, 2):
        (event,) = desk.run(cmd.Recall(at=desk.tick(), ticket_id=ticket.id))
        assert (event.type, event.counter_id) == ("ticket.recalled", C3)
        assert ticket.recalls == expected
    assert ticket.status is S.CALLED
    assert desk.state.counters[C3].current_ticket_id == ticket.id


def test_start_records_the_service_start(desk):
    ticket = desk.ticket_in(S.CALLED)
    at = desk.tick()
    (event,) = desk.run(cmd.StartService(at=at, ticket_id=ticket.id))
    assert (event.type, event.counter_id) == ("ticket.service_started", C3)
    assert (ticket.status, ticket.service_started_at) == (S.SERVING, at)
    assert desk.state.counters[C3].current_ticket_id == ticket.id


@pytest.mark.parametrize("outcome", list(Outcome))
def test_complete_records_the_outcome_and_frees_the_counter(desk, outcome):
    ticket = desk.ticket_in(S.SERVING)
    at = desk.tick()
    (event,) = desk.run(cmd.Complete(at=at, ticket_id=ticket.id, outcome=outcome))
    assert isinstance(event, TicketCompleted)
    assert (event.outcome, event.counter_id) == (outcome, C3)
    assert (ticket.status, ticket.finished_at) == (S.DONE, at)
    assert ticket.counter_id == C3  # kept for reports
    assert desk.state.counters[C3].current_ticket_id is None


def test_completing_a_called_ticket_starts_and_ends_the_service_at_once(desk):
    ticket = desk.ticket_in(S.CALLED)
    at = desk.tick()
    started, done = desk.run(cmd.Complete(at=at, ticket_id=ticket.id, outcome=Outcome.UNRESOLVED))
    assert isinstance(started, ServiceStarted)
    assert isinstance(done, TicketCompleted)
    assert started.counter_id == done.counter_id == C3
    assert started.id != done.id
    assert done.outcome is Outcome.UNRESOLVED
    assert ticket.service_started_at == ticket.finished_at == at
    assert ticket.status is S.DONE


def test_no_show_frees_the_counter(desk):
    ticket = desk.ticket_in(S.CALLED)
    (event,) = desk.run(cmd.MarkNoShow(at=desk.tick(), ticket_id=ticket.id))
    assert isinstance(event, TicketNoShow)
    assert event.counter_id == C3
    assert ticket.status is S.NO_SHOW
    assert desk.state.counters[C3].current_ticket_id is None
    assert ticket.finished_at == event.occurred_at


# -- transfers -----------------------------------------------------------------------


def transfer_scene(desk):
    """Accounts: A001 (earliest), A002; Loans: L001, L002 joined between them."""
    a1 = desk.issue(ACCOUNTS, "A001")
    l1 = desk.issue(LOANS, "L001")
    a2 = desk.issue(ACCOUNTS, "A002")
    l2 = desk.issue(LOANS, "L002")
    return a1, a2, l1, l2


@pytest.mark.parametrize(
    ("position", "loans"),
    [
        (BACK, ["L001", "L002", "A002"]),
        (FRONT, ["A002", "L001", "L002"]),
        (ORIGINAL, ["L001", "A002", "L002"]),
    ],
)
def test_transfer_of_a_waiting_ticket_places_it_in_the_target_queue(desk, position, loans):
    _, a2, _, _ = transfer_scene(desk)
    (event,) = desk.transfer(a2, LOANS, position)
    assert isinstance(event, TicketTransferred)
    assert (event.from_service_id, event.to_service_id) == (ACCOUNTS, LOANS)
    assert (event.position, event.counter_id) == (position, None)
    assert desk.order(LOANS) == loans
    assert desk.order(ACCOUNTS) == ["A001"]
    assert (a2.number, a2.service_id, a2.status, a2.transfers) == ("A002", LOANS, S.WAITING, 1)


@pytest.mark.parametrize(
    ("position", "loans"),
    [
        (BACK, ["L001", "L002", "A001"]),
        (FRONT, ["A001", "L001", "L002"]),
        (ORIGINAL, ["A001", "L001", "L002"]),
    ],
)
@pytest.mark.parametrize("status", [S.CALLED, S.SERVING])
def test_transfer_from_a_counter_frees_it_and_keeps_the_ticket(desk, status, position, loans):
    a1, _, _, _ = transfer_scene(desk)
    desk.open(C1)
    assert desk.call_next(C1) is a1
    if status is S.SERVING:
        desk.start(a1)
    (event,) = desk.transfer(a1, LOANS, position)
    assert event.counter_id == C1
    assert desk.state.counters[C1].current_ticket_id is None
    assert desk.state.tickets[a1.id] is a1
    assert (a1.number, a1.status, a1.counter_id, a1.service_id) == ("A001", S.WAITING, None, LOANS)
    assert a1.called_at is a1.service_started_at is None
    assert a1.segment_started_at == event.occurred_at == desk.now
    assert desk.order(LOANS) == loans
    assert desk.call_next(C1).number == loans[0]


def test_transfer_keeps_the_priority_class(desk):
    _, _, l1, _ = transfer_scene(desk)
    vip = desk.issue(ACCOUNTS, "A003", priority=PRIO)
    desk.transfer(vip, LOANS, BACK)
    assert vip.priority is PRIO
    assert desk.order(LOANS) == ["A003", "L001", "L002"]
    # A normal ticket sent to the front still waits behind the priority class.
    a1 = desk.state.tickets[desk.log[0].ticket_id]
    desk.transfer(a1, LOANS, FRONT)
    assert desk.order(LOANS) == ["A003", "A001", "L001", "L002"]
    assert l1.status is S.WAITING


def test_the_latest_ticket_sent_to_the_front_goes_first(desk):
    a1, a2, _, _ = transfer_scene(desk)
    desk.transfer(a1, LOANS, FRONT)
    desk.transfer(a2, LOANS, FRONT)
    assert desk.order(LOANS) == ["A002", "A001", "L001", "L002"]


def test_a_ticket_can_come_back_by_its_original_join_time(desk):
    a1, _, _, _ = transfer_scene(desk)
    desk.transfer(a1, LOANS, BACK)
    desk.transfer(a1, ACCOUNTS, ORIGINAL)
    assert desk.order(ACCOUNTS) == ["A001", "A002"]
    assert a1.transfers == 2


def test_transfer_to_its_own_service_is_refused(desk):
    ticket = desk.issue(ACCOUNTS, "A042")
    error = desk.reject(
        cmd.Transfer(at=desk.tick(), ticket_id=ticket.id, to_service_id=ACCOUNTS), DomainError
    )
    assert str(error) == "A042 is already in Accounts"


# -- park, return, cancel ------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.CALLED, S.SERVING])
def test_park_frees_the_counter_and_keeps_the_ticket_out_of_the_queue(desk, status):
    ticket = desk.ticket_in(status)
    (event,) = desk.run(cmd.Park(at=desk.tick(), ticket_id=ticket.id, note="fetching ID"))
    assert isinstance(event, TicketParked)
    assert (event.counter_id, event.note) == (C3, "fetching ID")
    assert (ticket.status, ticket.counter_id, ticket.queue_key) == (S.PARKED, None, None)
    assert desk.state.counters[C3].current_ticket_id is None
    assert ticket.id not in [t.id for t in desk.state.waiting_in(ACCOUNTS)]


def test_return_puts_a_parked_ticket_at_the_front_of_its_class(desk):
    parked = desk.ticket_in(S.PARKED, number="A042")
    desk.issue(ACCOUNTS, "A043")
    desk.issue(ACCOUNTS, "A044")
    at = desk.tick()
    (event,) = desk.run(cmd.ReturnTicket(at=at, ticket_id=parked.id))
    assert isinstance(event, TicketReturned)
    assert parked.status is S.WAITING
    assert parked.called_at is None
    assert desk.order(ACCOUNTS) == ["A042", "A043", "A044"]
    assert desk.state.position(parked) == 1
    desk.issue(ACCOUNTS, "A045", priority=PRIO)
    assert desk.order(ACCOUNTS) == ["A045", "A042", "A043", "A044"]
    assert desk.call_next(C3) is desk.state.ticket_by_number(parked.business_day, "A045")


@pytest.mark.parametrize("status", [S.WAITING, S.CALLED, S.PARKED])
def test_cancel_takes_the_ticket_out_for_good(desk, status):
    ticket = desk.ticket_in(status)
    other = desk.issue(ACCOUNTS, "A050")
    at = desk.tick()
    (event,) = desk.run(cmd.Cancel(at=at, ticket_id=ticket.id, reason="left the branch"))
    assert isinstance(event, TicketCancelled)
    assert event.reason == "left the branch"
    assert (ticket.status, ticket.finished_at, ticket.queue_key) == (S.CANCELLED, at, None)
    assert desk.order(ACCOUNTS) == ["A050"]
    assert desk.state.position(other) == 1
    assert desk.state.counters[C3].current_ticket_id is None


# -- events built by hand go through the same checks ---------------------------------


def test_pushed_events_for_counters_are_checked(desk):
    assert str(desk.reject_event(CounterClosed(**desk.meta(), counter_id=C1), DomainError)) == (
        "Counter 1 is already closed"
    )
    assert str(desk.reject_event(CounterResumed(**desk.meta(), counter_id=C1), DomainError)) == (
        "Counter 1 is closed, not paused"
    )
    apply(desk.state, CounterOpened(**desk.meta(), counter_id=C1, actor_id="staff-9"))
    assert desk.state.counters[C1].staff_id == "staff-9"
    error = desk.reject_event(CounterOpened(**desk.meta(), counter_id="ctr-9"), UnknownCounter)
    assert str(error) == "There is no counter ctr-9 in this branch"


def test_a_pushed_issue_is_checked_like_a_command(desk):
    ticket = desk.issue(ACCOUNTS, "A042")
    duplicate = desk.log[0].model_copy(update={"ticket_id": "tkt-other", "id": desk.meta()["id"]})
    error = desk.reject_event(duplicate, DomainError)
    assert str(error) == "A042 has already been issued on 2024-03-01"
    assert desk.state.tickets[ticket.id] is ticket
