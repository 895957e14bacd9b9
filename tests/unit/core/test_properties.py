"""Random command sequences against a small branch, with the invariants checked after each step.

The test keeps its own model of the branch, built only from the events that were
applied: ticket statuses, who holds which ticket, each waiting ticket's band and
ordinal. From that model it predicts whether each command is accepted (and which
events it causes, e.g. whom call-next picks by a brute-force scan) and checks the
real state against it after every step. Every event is also sent through its JSON
form, and the whole log is replayed into a fresh state after every step.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from core import commands as cmd
from core.errors import DomainError, InvalidValue
from core.events import (
    ServiceStarted,
    TicketCalled,
    TicketCancelled,
    event_to_dict,
    event_to_json,
    parse_event,
)
from core.ids import uuid7
from core.machine import apply, decide, replay
from core.state import CounterStatus, TicketStatus
from core.values import Channel, Outcome, PriorityClass, TicketNumber, TransferPosition
from tests.unit.core.builders import BRANCH_ID, CODES, COUNTERS, SERVICES, new_branch, snapshot

S = TicketStatus
DAY_STARTS_AT_MIN = 4 * 60
BERLIN = ZoneInfo("Europe/Berlin")
# 01:45 in Berlin on the night the clocks go forward (at 02:00 CET, i.e. 01:00 UTC); the
# branch's business day starts at 04:00 CEST (02:00 UTC), so short runs cross both.
START = datetime(2024, 3, 31, 0, 45, tzinfo=UTC)
SERVICE_IDS = [s.id for s in SERVICES]
COUNTER_IDS = [c.id for c in COUNTERS]
PROFILES = {c.id: c.work_profile for c in COUNTERS}
COUNTER_NAMES = {c.id: c.name for c in COUNTERS}
FRONT_BAND, NORMAL_BAND = 0, 1
REFUSED = object()
MOSTLY = st.sampled_from([True, True, True, False])  # shrinks towards True


def business_day(at):
    return (at.astimezone(BERLIN) - timedelta(minutes=DAY_STARTS_AT_MIN)).date()


class BranchMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.state = new_branch(day_starts_at_min=DAY_STARTS_AT_MIN)
        self.now = START
        self.log = []
        # The model, folded from applied events only.
        self.issued = []  # ticket ids in issue order
        self.status = {}
        self.service = {}
        self.priority = {}
        self.appointment = {}
        self.number = {}
        self.join = {}  # ordinal of the issue event
        self.place = {}  # waiting ticket -> (band, ordinal)
        self.holder = {}  # called or serving ticket -> counter
        self.recalls = {}
        self.counter_status = dict.fromkeys(COUNTER_IDS, CounterStatus.CLOSED)
        self.current = dict.fromkeys(COUNTER_IDS)
        self.used_numbers = set()  # (business day, number)
        self.fresh = {}  # (business day, prefix) -> last number handed out

    # -- the model ---------------------------------------------------------------

    def observe(self, event, ordinal):
        t = getattr(event, "ticket_id", None)
        match event.type:
            case "ticket.issued":
                self.issued.append(t)
                self.status[t] = S.WAITING
                self.service[t] = event.service_id
                self.priority[t] = event.priority
                self.appointment[t] = event.appointment_at
                self.number[t] = event.number
                self.join[t] = ordinal
                self.place[t] = (NORMAL_BAND, ordinal)
                self.recalls[t] = 0
                self.used_numbers.add((event.business_day, event.number))
            case "ticket.called":
                self.status[t] = S.CALLED
                del self.place[t]
                self.holder[t] = event.counter_id
                self.current[event.counter_id] = t
            case "ticket.recalled":
                self.recalls[t] += 1
            case "ticket.service_started":
                self.status[t] = S.SERVING
            case "ticket.completed" | "ticket.no_show" | "ticket.cancelled" | "ticket.parked":
                self.status[t] = {
                    "ticket.completed": S.DONE,
                    "ticket.no_show": S.NO_SHOW,
                    "ticket.cancelled": S.CANCELLED,
                    "ticket.parked": S.PARKED,
                }[event.type]
                self.place.pop(t, None)
                self.leave_counter(t)
            case "ticket.transferred":
                self.leave_counter(t)
                self.status[t] = S.WAITING
                self.service[t] = event.to_service_id
                self.place[t] = {
                    TransferPosition.FRONT: (FRONT_BAND, -ordinal),
                    TransferPosition.BACK: (NORMAL_BAND, ordinal),
                    TransferPosition.ORIGINAL: (NORMAL_BAND, self.join[t]),
                }[event.position]
            case "ticket.returned":
                self.status[t] = S.WAITING
                self.place[t] = (FRONT_BAND, -ordinal)
            case "counter.opened" | "counter.resumed":
                self.counter_status[event.counter_id] = CounterStatus.OPEN
            case "counter.paused":
                self.counter_status[event.counter_id] = CounterStatus.PAUSED
            case "counter.closed":
                self.counter_status[event.counter_id] = CounterStatus.CLOSED
            case _:  # pragma: no cover - a new event type needs a model
                raise AssertionError(event.type)

    def leave_counter(self, ticket_id):
        counter_id = self.holder.pop(ticket_id, None)
        if counter_id is not None:
            self.current[counter_id] = None

    def waiting(self, service_ids):
        return [
            t for t in self.issued if self.status[t] is S.WAITING and self.service[t] in service_ids
        ]

    def expected_order(self, service_id):
        """The DESIGN order of one service's queue, by brute force."""
        return sorted(
            self.waiting((service_id,)),
            key=lambda t: (-self.priority[t], *self.place[t]),
        )

    def expected_next(self, counter_id, now):
        """Whom call-next must pick, by scanning every waiting ticket of the work profile."""
        candidates = self.waiting(PROFILES[counter_id])
        if not candidates:
            return None
        top = max(self.priority[t] for t in candidates)
        best = [t for t in candidates if self.priority[t] == top]
        due = [t for t in best if self.appointment[t] is not None and self.appointment[t] <= now]
        if due:
            return min(due, key=lambda t: (self.appointment[t], self.place[t][1]))
        return min(best, key=lambda t: self.place[t])

    def counter_free(self, counter_id):
        return (
            self.counter_status[counter_id] is CounterStatus.OPEN
            and self.current[counter_id] is None
        )

    # -- running commands ------------------------------------------------------

    def record(self, event):
        ordinal = self.state.applied
        apply(self.state, event)
        self.observe(event, ordinal)
        self.log.append(event)
        wire = parse_event(event_to_json(event))
        assert wire == event
        assert type(wire) is type(event)
        assert parse_event(event_to_dict(event)) == event

    def execute(self, command, expected, names, error=DomainError):
        """Run ``command``; ``expected`` is REFUSED or the list of (type, ticket, counter)."""
        before = snapshot(self.state)
        if expected is REFUSED:
            with pytest.raises(error) as caught:
                decide(self.state, command)
            assert any(name in str(caught.value) for name in names), (str(caught.value), names)
            assert snapshot(self.state) == before
            return
        events = decide(self.state, command)
        assert snapshot(self.state) == before, "decide changed the state"
        assert [(e.type, getattr(e, "ticket_id", None)) for e in events] == [
            (kind, ticket) for kind, ticket, _ in expected
        ]
        for event, (_, _, counter_id) in zip(events, expected, strict=True):
            assert getattr(event, "counter_id", None) == counter_id
            assert (event.branch_id, event.occurred_at) == (BRANCH_ID, command.at)
        for event in events:
            self.record(event)

    # Rules run only when they have a fitting target, then mostly take one; the other
    # picks (any ticket, any counter) are how refusals are exercised.

    def any_ticket(self, *statuses):
        return any(self.status[t] in statuses for t in self.issued)

    def any_counter(self, wanted):
        return any(wanted(c) for c in COUNTER_IDS)

    def pick(self, data, statuses):
        """Mostly a ticket in one of ``statuses`` (so things happen), sometimes any ticket."""
        preferred = [t for t in self.issued if self.status[t] in statuses]
        prefer = preferred and data.draw(MOSTLY, label="prefer")
        pool = preferred if prefer else self.issued
        return data.draw(st.sampled_from(pool), label="ticket")

    def pick_counter(self, data, wanted):
        """Mostly a counter for which ``wanted(counter_id)`` holds, sometimes any counter."""
        preferred = [c for c in COUNTER_IDS if wanted(c)]
        prefer = preferred and data.draw(MOSTLY, label="prefer counter")
        return data.draw(st.sampled_from(preferred if prefer else COUNTER_IDS), label="counter")

    @initialize()
    def open_two_counters(self):
        for counter_id in COUNTER_IDS[:2]:
            self.execute(
                cmd.OpenCounter(at=self.now, counter_id=counter_id),
                [("counter.opened", None, counter_id)],
                [],
            )

    # -- rules -------------------------------------------------------------------

    @rule(minutes=st.sampled_from([1, 5, 15, 30, 60, 240]))
    def tick(self, minutes):
        self.now += timedelta(minutes=minutes)

    @rule(
        data=st.data(),
        service_id=st.sampled_from(SERVICE_IDS),
        priority=st.sampled_from(PriorityClass),
        channel=st.sampled_from(Channel),
        appointment_in=st.integers(-90, 120),
        mismatch=st.integers(0, 9),
        numbering=st.sampled_from(["fresh"] * 8 + ["reuse", "other_prefix"]),
    )
    def issue(self, data, service_id, priority, channel, appointment_in, mismatch, numbering):
        day = business_day(self.now)
        code = CODES[service_id]
        appointment = (channel is Channel.APPOINTMENT) != (mismatch == 9)
        appointment_at = self.now + timedelta(minutes=appointment_in) if appointment else None
        if numbering == "reuse" and self.issued:
            number = self.number[data.draw(st.sampled_from(self.issued), label="reused")]
        else:
            prefix = code
            if numbering == "other_prefix":
                prefix = data.draw(st.sampled_from(sorted(set(CODES.values()) - {code})))
            n = self.fresh[(day, prefix)] = self.fresh.get((day, prefix), 0) + 1
            number = str(TicketNumber(prefix, n))
        ticket_id = str(uuid7())
        accepted = (
            number.rstrip("0123456789") == code
            and (day, number) not in self.used_numbers
            and appointment == (channel is Channel.APPOINTMENT)
        )
        self.execute(
            cmd.IssueTicket(
                at=self.now,
                service_id=service_id,
                number=TicketNumber.parse(number),
                priority=priority,
                channel=channel,
                appointment_at=appointment_at,
                ticket_id=ticket_id,
            ),
            [("ticket.issued", ticket_id, None)] if accepted else REFUSED,
            [number],
        )
        if accepted:
            ticket = self.state.tickets[ticket_id]
            assert (ticket.business_day, ticket.number) == (day, number)

    @precondition(
        lambda self: self.any_counter(
            lambda c: self.counter_free(c) and self.expected_next(c, self.now)
        )
    )
    @rule(data=st.data())
    def call_next(self, data):
        counter_id = self.pick_counter(data, self.counter_free)
        chosen = self.expected_next(counter_id, self.now)
        ok = self.counter_free(counter_id) and chosen is not None
        self.execute(
            cmd.CallNext(at=self.now, counter_id=counter_id),
            [("ticket.called", chosen, counter_id)] if ok else REFUSED,
            [COUNTER_NAMES[counter_id]],
        )

    @precondition(lambda self: self.any_counter(self.counter_free) and self.any_ticket(S.WAITING))
    @rule(data=st.data())
    def call_ticket(self, data):
        counter_id = self.pick_counter(data, self.counter_free)
        t = self.pick(data, {S.WAITING})
        ok = self.status[t] is S.WAITING and self.counter_free(counter_id)
        self.execute(
            cmd.CallTicket(at=self.now, counter_id=counter_id, ticket_id=t),
            [("ticket.called", t, counter_id)] if ok else REFUSED,
            [self.number[t], COUNTER_NAMES[counter_id]],
        )

    @precondition(lambda self: self.any_ticket(S.CALLED))
    @rule(data=st.data())
    def recall(self, data):
        t = self.pick(data, {S.CALLED})
        ok = self.status[t] is S.CALLED
        recalls = self.recalls[t]
        self.execute(
            cmd.Recall(at=self.now, ticket_id=t),
            [("ticket.recalled", t, self.holder.get(t))] if ok else REFUSED,
            [self.number[t]],
        )
        assert self.state.tickets[t].recalls == recalls + ok

    @precondition(lambda self: self.any_ticket(S.CALLED))
    @rule(data=st.data())
    def start(self, data):
        t = self.pick(data, {S.CALLED})
        ok = self.status[t] is S.CALLED
        self.execute(
            cmd.StartService(at=self.now, ticket_id=t),
            [("ticket.service_started", t, self.holder.get(t))] if ok else REFUSED,
            [self.number[t]],
        )

    @precondition(lambda self: self.any_ticket(S.CALLED, S.SERVING))
    @rule(data=st.data(), outcome=st.sampled_from(Outcome))
    def complete(self, data, outcome):
        t = self.pick(data, {S.CALLED, S.SERVING})
        at = self.holder.get(t)
        expected = {
            S.CALLED: [("ticket.service_started", t, at), ("ticket.completed", t, at)],
            S.SERVING: [("ticket.completed", t, at)],
        }.get(self.status[t], REFUSED)
        self.execute(
            cmd.Complete(at=self.now, ticket_id=t, outcome=outcome), expected, [self.number[t]]
        )

    @precondition(lambda self: self.any_ticket(S.CALLED))
    @rule(data=st.data())
    def no_show(self, data):
        t = self.pick(data, {S.CALLED})
        ok = self.status[t] is S.CALLED
        self.execute(
            cmd.MarkNoShow(at=self.now, ticket_id=t),
            [("ticket.no_show", t, self.holder.get(t))] if ok else REFUSED,
            [self.number[t]],
        )

    @precondition(lambda self: self.any_ticket(S.WAITING, S.CALLED, S.SERVING))
    @rule(
        data=st.data(),
        to_service_id=st.sampled_from(SERVICE_IDS),
        position=st.sampled_from(TransferPosition),
    )
    def transfer(self, data, to_service_id, position):
        t = self.pick(data, {S.WAITING, S.CALLED, S.SERVING})
        ok = self.status[t] in (S.WAITING, S.CALLED, S.SERVING) and to_service_id != self.service[t]
        self.execute(
            cmd.Transfer(at=self.now, ticket_id=t, to_service_id=to_service_id, position=position),
            [("ticket.transferred", t, self.holder.get(t))] if ok else REFUSED,
            [self.number[t]],
        )
        if ok:
            ticket = self.state.tickets[t]
            assert (ticket.service_id, ticket.priority) == (to_service_id, self.priority[t])

    @precondition(lambda self: self.any_ticket(S.CALLED, S.SERVING))
    @rule(data=st.data())
    def park(self, data):
        t = self.pick(data, {S.CALLED, S.SERVING})
        ok = self.status[t] in (S.CALLED, S.SERVING)
        self.execute(
            cmd.Park(at=self.now, ticket_id=t),
            [("ticket.parked", t, self.holder.get(t))] if ok else REFUSED,
            [self.number[t]],
        )

    @precondition(lambda self: self.any_ticket(S.PARKED))
    @rule(data=st.data())
    def return_(self, data):
        t = self.pick(data, {S.PARKED})
        ok = self.status[t] is S.PARKED
        self.execute(
            cmd.ReturnTicket(at=self.now, ticket_id=t),
            [("ticket.returned", t, None)] if ok else REFUSED,
            [self.number[t]],
        )

    @precondition(lambda self: self.any_ticket(S.WAITING, S.CALLED, S.PARKED))
    @rule(data=st.data())
    def cancel(self, data):
        t = self.pick(data, {S.WAITING, S.CALLED, S.PARKED})
        ok = self.status[t] in (S.WAITING, S.CALLED, S.PARKED)
        self.execute(
            cmd.Cancel(at=self.now, ticket_id=t),
            [("ticket.cancelled", t, None)] if ok else REFUSED,
            [self.number[t]],
        )

    @precondition(
        lambda self: self.any_counter(lambda c: self.counter_status[c] is CounterStatus.CLOSED)
    )
    @rule(data=st.data())
    def open_counter(self, data):
        counter_id = self.pick_counter(
            data, lambda c: self.counter_status[c] is CounterStatus.CLOSED
        )
        ok = self.counter_status[counter_id] is CounterStatus.CLOSED
        self.execute(
            cmd.OpenCounter(at=self.now, counter_id=counter_id),
            [("counter.opened", None, counter_id)] if ok else REFUSED,
            [COUNTER_NAMES[counter_id]],
        )

    @precondition(
        lambda self: self.any_counter(lambda c: self.counter_status[c] is not CounterStatus.CLOSED)
    )
    @rule(data=st.data())
    def close_counter(self, data):
        counter_id = self.pick_counter(
            data,
            lambda c: (
                self.counter_status[c] is not CounterStatus.CLOSED and self.current[c] is None
            ),
        )
        ok = (
            self.counter_status[counter_id] is not CounterStatus.CLOSED
            and self.current[counter_id] is None
        )
        self.execute(
            cmd.CloseCounter(at=self.now, counter_id=counter_id),
            [("counter.closed", None, counter_id)] if ok else REFUSED,
            [COUNTER_NAMES[counter_id]],
        )

    @precondition(lambda self: self.any_counter(self.counter_free))
    @rule(data=st.data(), reason=st.sampled_from(["lunch", "training", "lunch", " ", ""]))
    def pause_counter(self, data, reason):
        counter_id = self.pick_counter(data, self.counter_free)
        if not reason.strip():
            self.execute(
                cmd.PauseCounter(at=self.now, counter_id=counter_id, reason=reason),
                REFUSED,
                [COUNTER_NAMES[counter_id]],
                error=InvalidValue,
            )
            return
        ok = self.counter_free(counter_id)
        self.execute(
            cmd.PauseCounter(at=self.now, counter_id=counter_id, reason=reason),
            [("counter.paused", None, counter_id)] if ok else REFUSED,
            [COUNTER_NAMES[counter_id]],
        )

    @precondition(
        lambda self: self.any_counter(lambda c: self.counter_status[c] is CounterStatus.PAUSED)
    )
    @rule(data=st.data())
    def resume_counter(self, data):
        counter_id = self.pick_counter(
            data, lambda c: self.counter_status[c] is CounterStatus.PAUSED
        )
        ok = self.counter_status[counter_id] is CounterStatus.PAUSED
        self.execute(
            cmd.ResumeCounter(at=self.now, counter_id=counter_id),
            [("counter.resumed", None, counter_id)] if ok else REFUSED,
            [COUNTER_NAMES[counter_id]],
        )

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), kind=st.sampled_from(["call", "start", "cancel"]))
    def push_event(self, data, kind):
        """An event from another device, applied without ``decide``: ``apply`` must check it."""
        counter_id = data.draw(st.sampled_from(COUNTER_IDS), label="counter")
        t = self.pick(data, {S.WAITING, S.CALLED})
        meta = {"id": uuid7(), "branch_id": BRANCH_ID, "occurred_at": self.now}
        if kind == "call":
            event = TicketCalled(**meta, ticket_id=t, counter_id=counter_id)
            ok = self.status[t] is S.WAITING and self.counter_free(counter_id)
        elif kind == "start":
            event = ServiceStarted(**meta, ticket_id=t, counter_id=counter_id)
            ok = self.status[t] is S.CALLED and self.holder[t] == counter_id
        else:
            event = TicketCancelled(**meta, ticket_id=t)
            ok = self.status[t] in (S.WAITING, S.CALLED, S.PARKED)
        if ok:
            self.record(event)
            return
        before = snapshot(self.state)
        with pytest.raises(DomainError):
            apply(self.state, event)
        assert snapshot(self.state) == before

    # -- invariants --------------------------------------------------------------

    @invariant()
    def counters_and_their_tickets_point_at_each_other(self):
        held = [c.current_ticket_id for c in self.state.counters.values() if c.current_ticket_id]
        assert len(held) == len(set(held)), "a ticket is at two counters"
        for counter in self.state.counters.values():
            assert counter.status is self.counter_status[counter.id]
            assert counter.current_ticket_id == self.current[counter.id]
            assert (counter.pause_reason is not None) == (counter.status is CounterStatus.PAUSED)
            if counter.current_ticket_id is not None:
                ticket = self.state.tickets[counter.current_ticket_id]
                assert ticket.counter_id == counter.id
                assert ticket.status in (S.CALLED, S.SERVING)
                assert counter.status is CounterStatus.OPEN
        for ticket in self.state.tickets.values():
            if ticket.status in (S.CALLED, S.SERVING):
                assert ticket.counter_id is not None
                assert self.state.counters[ticket.counter_id].current_ticket_id == ticket.id

    @invariant()
    def every_ticket_has_its_status_and_waiting_ones_are_exactly_the_index(self):
        assert list(self.state.tickets) == self.issued
        for t, ticket in self.state.tickets.items():
            assert ticket.status is self.status[t]
            assert ticket.service_id == self.service[t]
            assert ticket.recalls == self.recalls[t]
            assert (ticket.queue_key is not None) == (ticket.status is S.WAITING)
        indexed = []
        for service_id, queue in self.state.waiting.queues.items():
            for key in queue.general:
                assert self.state.tickets[key[3]].service_id == service_id
                assert self.state.tickets[key[3]].queue_key == key
                indexed.append(key[3])
            for key in queue.appointments:
                assert self.state.tickets[key[3]].appointment_key == key
        assert len(indexed) == len(set(indexed))
        assert set(indexed) == {t for t in self.issued if self.status[t] is S.WAITING}
        assert len(self.state.numbers) == len(self.state.tickets)
        assert {(t.business_day, t.number) for t in self.state.tickets.values()} == set(
            self.state.numbers
        )

    @invariant()
    def waiting_order_and_call_next_agree_with_brute_force(self):
        for service_id in SERVICE_IDS:
            order = [t.id for t in self.state.waiting_in(service_id)]
            assert order == self.expected_order(service_id)
            for place, t in enumerate(order, start=1):
                assert self.state.position(self.state.tickets[t]) == place
        for counter_id in COUNTER_IDS:
            for later in (0, 45, 200):
                now = self.now + timedelta(minutes=later)
                picked = self.state.waiting.next_ticket(PROFILES[counter_id], now)
                assert picked == self.expected_next(counter_id, now)

    @invariant()
    def replaying_the_log_rebuilds_the_same_state(self):
        rebuilt = replay(new_branch(day_starts_at_min=DAY_STARTS_AT_MIN), self.log)
        assert snapshot(rebuilt) == snapshot(self.state)
        assert self.state.applied == len(self.log)


BranchMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestBranchMachine = BranchMachine.TestCase
