"""The KPI reference implementation on small histories computed by hand."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.commands import (
    CallTicket,
    Cancel,
    CloseCounter,
    Command,
    Complete,
    IssueTicket,
    MarkNoShow,
    OpenCounter,
    Park,
    PauseCounter,
    Recall,
    ResumeCounter,
    ReturnTicket,
    StartService,
    Transfer,
)
from core.errors import InvalidValue
from core.events import EventBase, event_to_json, parse_event
from core.kpi import (
    Distribution,
    Segment,
    SegmentEnd,
    completions,
    compute,
    compute_grouped,
    local_hour_start,
    pauses,
    percentile,
    segments,
)
from core.machine import apply, decide
from core.state import BranchState, CounterConfig, ServiceConfig
from core.values import TicketNumber

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
SERVICES = (
    ServiceConfig("accounts", "A", "Accounts", target_wait_s=600),
    ServiceConfig("loans", "L", "Loans", target_wait_s=300),
    ServiceConfig("info", "I", "Information", target_wait_s=None),
)
TARGETS = {s.id: s.target_wait_s for s in SERVICES}
PROFILE = ("accounts", "loans", "info")
COUNTERS = (CounterConfig("c1", "Counter 1", PROFILE), CounterConfig("c2", "Counter 2", PROFILE))


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Branch:
    """A branch that runs real commands through decide/apply and keeps the events."""

    def __init__(self) -> None:
        self.state = BranchState.new("b1", "Europe/Berlin", SERVICES, COUNTERS)
        self.events: list[EventBase] = []
        self._last: dict[str, int] = {}

    def run(self, command: Command) -> list[EventBase]:
        events = decide(self.state, command)
        for event in events:
            apply(self.state, event)
        self.events.extend(events)
        return events

    def issue(self, ticket_id: str, service_id: str, at: datetime) -> None:
        code = self.state.services[service_id].code
        self._last[code] = self._last.get(code, 0) + 1
        number = TicketNumber(code, self._last[code])
        self.run(IssueTicket(at=at, service_id=service_id, number=number, ticket_id=ticket_id))

    def open(self, *counters_and_staff: tuple[str, str], at: datetime) -> None:
        for counter_id, staff in counters_and_staff:
            self.run(OpenCounter(at=at, counter_id=counter_id, actor_id=staff))

    def serve(self, ticket_id: str, counter_id: str, staff: str, called: datetime, done: datetime):
        self.run(CallTicket(at=called, counter_id=counter_id, ticket_id=ticket_id, actor_id=staff))
        self.run(StartService(at=called, ticket_id=ticket_id, actor_id=staff))
        self.run(Complete(at=done, ticket_id=ticket_id, actor_id=staff))

    def report(self, **kwargs):
        return compute(self.events, targets=TARGETS, time_zone="Europe/Berlin", **kwargs)


@pytest.fixture
def branch() -> Branch:
    b = Branch()
    b.open(("c1", "ana"), ("c2", "ben"), at=T0)
    return b


# -- single tickets ----------------------------------------------------------------


def test_issue_call_start_complete(branch):
    branch.issue("t1", "accounts", m(0))
    branch.run(CallTicket(at=m(5), counter_id="c1", ticket_id="t1", actor_id="ana"))
    branch.run(StartService(at=m(6), ticket_id="t1", actor_id="ana"))
    branch.run(Complete(at=m(16), ticket_id="t1", actor_id="ana"))

    assert segments(branch.events) == [
        Segment(
            "t1", 0, "A001", "accounts", m(0), m(5), "c1", "ana", 300.0, m(16), SegmentEnd.COMPLETED
        )
    ]
    [completion] = completions(branch.events)
    assert (completion.started_at, completion.service_s, completion.staff_id) == (
        m(6),
        600.0,
        "ana",
    )
    r = branch.report()
    assert (r.issued, r.called, r.served, r.no_show, r.cancelled, r.abandoned) == (1, 1, 1, 0, 0, 0)
    assert r.wait == Distribution(1, 300.0, 300.0, 300.0, 300.0, 300.0)
    assert r.service == Distribution(1, 600.0, 600.0, 600.0, 600.0, 600.0)
    assert (r.sla_eligible, r.sla_met, r.sla_attainment) == (1, 1, 1.0)
    assert (r.no_show_rate, r.abandonment_rate) == (0.0, 0.0)
    assert r.served_per_local_hour == {datetime(2026, 3, 2, 9, tzinfo=BERLIN): 1}


def test_recalls_do_not_change_the_wait(branch):
    branch.issue("t1", "accounts", m(0))
    branch.run(CallTicket(at=m(2), counter_id="c1", ticket_id="t1", actor_id="ana"))
    branch.run(Recall(at=m(4), ticket_id="t1", actor_id="ana"))
    branch.run(Recall(at=m(6), ticket_id="t1", actor_id="ana"))
    branch.run(Complete(at=m(9), ticket_id="t1", actor_id="ana"))  # starts and completes
    r = branch.report()
    assert (r.wait.max, r.recalls, r.called) == (120.0, 2, 1)
    assert r.service.max == 0.0  # the start is emitted together with the completion


def test_a_transfer_starts_a_new_segment_with_its_own_wait(branch):
    branch.issue("t1", "accounts", m(0))
    branch.run(CallTicket(at=m(3), counter_id="c1", ticket_id="t1", actor_id="ana"))
    branch.run(StartService(at=m(4), ticket_id="t1"))
    branch.run(Transfer(at=m(10), ticket_id="t1", to_service_id="loans", actor_id="ana"))
    branch.serve("t1", "c2", "ben", called=m(25), done=m(29))

    first, second = segments(branch.events)
    assert (first.seq, first.service_id, first.wait_s, first.end) == (
        0,
        "accounts",
        180.0,
        SegmentEnd.TRANSFERRED,
    )
    assert (second.seq, second.service_id, second.started_at, second.wait_s) == (
        1,
        "loans",
        m(10),
        900.0,
    )
    assert (second.counter_id, second.staff_id, second.end) == ("c2", "ben", SegmentEnd.COMPLETED)
    r = branch.report()
    assert (r.issued, r.called, r.transfers, r.served) == (1, 2, 1, 1)
    assert r.wait.mean == 540.0
    assert r.service.max == 240.0  # the latest start (in loans), not the one in accounts
    assert (r.sla_eligible, r.sla_met) == (2, 1)  # accounts 180 <= 600; loans 900 > 300


def test_park_and_return_stay_in_the_same_segment(branch):
    branch.issue("t1", "accounts", m(0))
    branch.run(CallTicket(at=m(2), counter_id="c1", ticket_id="t1", actor_id="ana"))
    branch.run(StartService(at=m(3), ticket_id="t1"))
    branch.run(Park(at=m(5), ticket_id="t1", note="fetching documents"))
    branch.run(ReturnTicket(at=m(20), ticket_id="t1"))
    branch.serve("t1", "c2", "ben", called=m(30), done=m(34))

    [segment] = segments(branch.events)
    assert (segment.wait_s, segment.counter_id, segment.staff_id) == (120.0, "c1", "ana")
    r = branch.report()
    assert (r.called, r.wait.count, r.service.max) == (1, 1, 240.0)


# -- rates ---------------------------------------------------------------------------


def test_no_show_rate_is_per_called_segment(branch):
    for i in range(4):
        branch.issue(f"t{i}", "accounts", m(i))
    branch.run(CallTicket(at=m(5), counter_id="c1", ticket_id="t0", actor_id="ana"))
    branch.run(MarkNoShow(at=m(7), ticket_id="t0", actor_id="ana"))
    branch.serve("t1", "c1", "ana", called=m(8), done=m(10))
    branch.run(CallTicket(at=m(11), counter_id="c2", ticket_id="t2", actor_id="ben"))
    branch.run(Transfer(at=m(12), ticket_id="t2", to_service_id="loans"))
    branch.run(CallTicket(at=m(13), counter_id="c2", ticket_id="t2", actor_id="ben"))
    branch.run(MarkNoShow(at=m(15), ticket_id="t2", actor_id="ben"))
    # t3 is never called: it is not in the denominator
    r = branch.report()
    assert (r.no_show, r.called, r.transfers) == (2, 4, 1)
    assert r.no_show_rate == 0.5


def test_abandonment_counts_only_tickets_never_called(branch):
    for ticket_id in ("t1", "t2", "t3", "t4"):
        branch.issue(ticket_id, "accounts", m(0))
    branch.run(Cancel(at=m(1), ticket_id="t1", reason="left"))  # abandoned
    branch.run(CallTicket(at=m(2), counter_id="c1", ticket_id="t2"))
    branch.run(Cancel(at=m(3), ticket_id="t2"))  # after a call: not abandoned
    branch.run(CallTicket(at=m(4), counter_id="c1", ticket_id="t3"))
    branch.run(Transfer(at=m(5), ticket_id="t3", to_service_id="loans"))
    branch.run(Cancel(at=m(6), ticket_id="t3"))  # uncalled in loans, but called before
    branch.serve("t4", "c2", "ben", called=m(7), done=m(8))
    r = branch.report()
    assert (r.issued, r.cancelled, r.abandoned) == (4, 3, 1)
    assert r.abandonment_rate == 0.25
    assert [s.end for s in segments(branch.events)] == [
        SegmentEnd.CANCELLED,
        SegmentEnd.CANCELLED,
        SegmentEnd.TRANSFERRED,
        SegmentEnd.COMPLETED,
        SegmentEnd.CANCELLED,
    ]


def test_sla_counts_called_segments_of_services_with_a_target(branch):
    branch.issue("met", "accounts", m(0))
    branch.issue("edge", "accounts", m(0))
    branch.issue("late", "accounts", m(0))
    branch.issue("free", "info", m(0))
    branch.issue("uncalled", "loans", m(0))
    branch.serve("met", "c1", "ana", called=m(5), done=m(6))
    branch.serve("edge", "c1", "ana", called=m(10), done=m(11))  # exactly the target
    branch.serve("late", "c1", "ana", called=m(12), done=m(13))
    branch.serve("free", "c1", "ana", called=m(500), done=m(501))
    r = branch.report()
    assert (r.sla_eligible, r.sla_met) == (3, 2)
    assert r.sla_attainment == pytest.approx(2 / 3)

    no_targets = compute(branch.events, targets={}, time_zone="Europe/Berlin")
    assert (no_targets.sla_eligible, no_targets.sla_attainment) == (0, None)
    assert no_targets.wait == r.wait


def test_empty_input_gives_zero_counts_and_no_rates():
    r = compute([], targets=TARGETS, time_zone="Europe/Berlin")
    empty = Distribution(0, None, None, None, None, None)
    counts = (r.issued, r.called, r.served, r.no_show, r.cancelled, r.abandoned, r.transfers)
    assert counts == (0,) * 7
    assert (r.recalls, r.sla_eligible, r.sla_met) == (0, 0, 0)
    assert (r.wait, r.service) == (empty, empty)
    assert (r.sla_attainment, r.no_show_rate, r.abandonment_rate) == (None, None, None)
    assert (r.pause_seconds_by_reason, r.served_per_local_hour) == ({}, {})
    assert segments([]) == []
    assert compute_grouped([], key="service", targets=TARGETS, time_zone="Europe/Berlin") == {}


def test_events_of_tickets_issued_before_the_input_are_ignored(branch):
    branch.issue("t1", "accounts", m(0))
    branch.serve("t1", "c1", "ana", called=m(1), done=m(2))
    r = compute(branch.events[3:], targets=TARGETS, time_zone="Europe/Berlin")
    assert (r.issued, r.called, r.served) == (0, 0, 0)


# -- distributions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "p50", "p90", "p95"),
    [
        ([15, 20, 35, 40, 50], 35, 50, 50),
        ([7], 7, 7, 7),
        ([1, 2, 2, 2, 3], 2, 3, 3),
        (list(range(1, 11)), 5, 9, 10),
        (list(range(1, 21)), 10, 18, 19),  # rank 19 exactly, not 20
        (list(range(1, 101)), 50, 90, 95),
    ],
)
def test_nearest_rank_percentiles(values, p50, p90, p95):
    d = Distribution.of(reversed(values))
    assert (d.p50, d.p90, d.p95, d.max, d.count) == (p50, p90, p95, max(values), len(values))
    assert d.mean == pytest.approx(sum(values) / len(values))


def test_percentile_edges():
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0], 100) == 2.0
    assert percentile([1.0, 2.0], 0.1) == 1.0
    assert percentile(list(range(1, 101)), 7) == 7  # 7 / 100 * 100 > 7 in floats
    for bad in (0, -5, 100.5):
        with pytest.raises(InvalidValue, match="percentile"):
            percentile([1.0], bad)


@given(
    st.lists(st.integers(min_value=-(10**6), max_value=10**6), min_size=1),
    st.integers(min_value=1, max_value=100),
)
def test_percentile_properties(values, p):
    ordered = sorted(values)
    result = percentile(ordered, p)
    assert result in values
    n = len(values)
    assert sum(v <= result for v in values) * 100 >= p * n  # at least p% at or below
    assert sum(v < result for v in values) * 100 < p * n  # and it is the smallest such value
    d = Distribution.of(values)
    assert d.p50 <= d.p90 <= d.p95 <= d.max


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1))
def test_distribution_of_floats_is_ordered(values):
    d = Distribution.of(values)
    assert d.p50 <= d.p90 <= d.p95 <= d.max == max(values)
    assert d.p95 in values


# -- pauses --------------------------------------------------------------------------


def test_pause_seconds_by_reason_with_and_without_until(branch):
    branch.run(PauseCounter(at=m(60), counter_id="c1", reason="lunch", actor_id="ana"))
    branch.run(ResumeCounter(at=m(90), counter_id="c1"))
    branch.run(PauseCounter(at=m(100), counter_id="c1", reason="training"))
    branch.run(CloseCounter(at=m(110), counter_id="c1"))
    branch.run(PauseCounter(at=m(120), counter_id="c2", reason="lunch", actor_id="ben"))

    assert branch.report().pause_seconds_by_reason == {"lunch": 1800.0, "training": 600.0}
    with_until = branch.report(until=m(130)).pause_seconds_by_reason
    assert with_until == {"lunch": 2400.0, "training": 600.0}
    before_the_pause = branch.report(until=m(100)).pause_seconds_by_reason
    assert before_the_pause == {"lunch": 1800.0, "training": 600.0}
    open_pause = pauses(branch.events, until=m(130))[-1]
    assert (open_pause.counter_id, open_pause.staff_id, open_pause.ended_at) == (
        "c2",
        "ben",
        m(130),
    )
    with pytest.raises(InvalidValue, match="naive"):
        branch.report(until=datetime(2026, 3, 2, 12))  # naive on purpose


# -- time zones ------------------------------------------------------------------------


def berlin(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=BERLIN)


@pytest.fixture
def spring_forward() -> Branch:
    """2026-03-29 in Berlin: 02:00 CET is followed by 03:00 CEST."""
    b = Branch()
    b.open(("c1", "ana"), ("c2", "ben"), at=berlin(28, 23, 0))
    b.issue("t1", "accounts", berlin(28, 23, 50))
    b.issue("t2", "accounts", berlin(29, 0, 30))
    b.serve("t1", "c1", "ana", called=berlin(29, 0, 40), done=berlin(29, 0, 50))
    b.issue("t3", "accounts", berlin(29, 1, 50))
    b.serve("t2", "c1", "ana", called=berlin(29, 1, 55), done=berlin(29, 3, 5))
    b.serve("t3", "c2", "ben", called=berlin(29, 3, 10), done=berlin(29, 3, 20))
    return b


def test_durations_across_the_dst_jump_are_elapsed_seconds(spring_forward):
    waits = [s.wait_s for s in segments(spring_forward.events)]
    assert waits == [3000.0, 5100.0, 1200.0]  # wall clocks would say 3000, 5100, 4800
    assert [c.service_s for c in completions(spring_forward.events)] == [600.0, 600.0, 600.0]
    # The same history after a JSON round trip (fixed offsets instead of a zone) agrees.
    parsed = [parse_event(event_to_json(e)) for e in spring_forward.events]
    assert compute(parsed, targets=TARGETS, time_zone="Europe/Berlin") == spring_forward.report()


def test_hours_are_local_and_the_skipped_hour_has_no_bucket(spring_forward):
    served = spring_forward.report().served_per_local_hour
    assert served == {berlin(29, 0, 0): 1, berlin(29, 3, 0): 2}
    assert [(k.hour, k.utcoffset()) for k in served] == [
        (0, timedelta(hours=1)),
        (3, timedelta(hours=2)),
    ]
    hourly = compute_grouped(
        spring_forward.events, key="hour", targets=TARGETS, time_zone="Europe/Berlin"
    )
    assert [k.hour for k in hourly] == [23, 0, 1, 3]
    assert (hourly[berlin(29, 1, 0)].issued, hourly[berlin(29, 1, 0)].wait.max) == (1, 1200.0)
    assert (hourly[berlin(29, 3, 0)].served, hourly[berlin(29, 3, 0)].issued) == (2, 0)


def test_days_are_local_dates(spring_forward):
    daily = compute_grouped(
        spring_forward.events, key="day", targets=TARGETS, time_zone="Europe/Berlin"
    )
    # t2 was issued at 23:30 UTC on the 28th, which is already the 29th in Berlin.
    assert list(daily) == [date(2026, 3, 28), date(2026, 3, 29)]
    before, day = daily[date(2026, 3, 28)], daily[date(2026, 3, 29)]
    assert (before.issued, before.called, before.served) == (1, 1, 0)  # by segment start
    assert (day.issued, day.called, day.served) == (2, 2, 3)  # completions by their own time


def test_the_repeated_autumn_hour_gives_two_buckets():
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    a, b = local_hour_start(first, "Europe/Berlin"), local_hour_start(second, "Europe/Berlin")
    assert (a.hour, b.hour) == (2, 2)
    assert b - a == timedelta(hours=1)
    assert len({a, b}) == 2


# -- grouping ----------------------------------------------------------------------------


@pytest.fixture
def shift(branch) -> Branch:
    branch.issue("t1", "accounts", m(0))
    branch.issue("t2", "loans", m(1))
    branch.issue("t3", "accounts", m(2))
    branch.run(CallTicket(at=m(5), counter_id="c1", ticket_id="t1", actor_id="ana"))
    branch.run(StartService(at=m(5), ticket_id="t1", actor_id="ana"))
    branch.run(Transfer(at=m(10), ticket_id="t1", to_service_id="loans", actor_id="ana"))
    branch.serve("t2", "c2", "ben", called=m(6), done=m(12))
    branch.run(CallTicket(at=m(15), counter_id="c2", ticket_id="t1", actor_id="ben"))
    branch.run(StartService(at=m(15), ticket_id="t1", actor_id="ben"))
    branch.run(Cancel(at=m(20), ticket_id="t3"))
    branch.run(Complete(at=m(25), ticket_id="t1", actor_id="cara"))  # cara took over c2
    branch.run(PauseCounter(at=m(30), counter_id="c1", reason="lunch", actor_id="ana"))
    branch.run(ResumeCounter(at=m(40), counter_id="c1", actor_id="ana"))
    return branch


def grouped(b: Branch, key):
    return compute_grouped(b.events, key=key, targets=TARGETS, time_zone="Europe/Berlin")


def test_grouping_by_service(shift):
    by_service = grouped(shift, "service")
    assert list(by_service) == ["accounts", "loans"]
    accounts, loans = by_service["accounts"], by_service["loans"]
    assert (accounts.issued, accounts.abandoned, accounts.called, accounts.served) == (2, 1, 1, 0)
    assert (accounts.transfers, accounts.cancelled, accounts.abandonment_rate) == (1, 1, 0.5)
    assert (loans.issued, loans.called, loans.served, loans.transfers) == (1, 2, 2, 0)
    assert (loans.wait.max, loans.service.p50, loans.service.max) == (300.0, 360.0, 600.0)
    assert loans.pause_seconds_by_reason == {}  # pauses belong to no service
    total = shift.report()
    for field in ("issued", "called", "served", "transfers", "cancelled", "abandoned"):
        assert sum(getattr(r, field) for r in by_service.values()) == getattr(total, field)


def test_grouping_by_counter_and_staff(shift):
    by_counter = grouped(shift, "counter")
    c1, c2 = by_counter["c1"], by_counter["c2"]
    assert (c1.called, c1.served, c1.transfers, c1.issued, c1.abandonment_rate) == (
        1,
        0,
        1,
        0,
        None,
    )
    assert c1.pause_seconds_by_reason == {"lunch": 600.0}
    assert (c2.called, c2.served, c2.wait.mean, c2.sla_attainment) == (2, 2, 300.0, 1.0)

    by_staff = grouped(shift, "staff")
    assert list(by_staff) == ["ana", "ben", "cara"]
    ana, ben, cara = by_staff["ana"], by_staff["ben"], by_staff["cara"]
    assert (ana.called, ana.transfers, ana.served, ana.pause_seconds_by_reason) == (
        1,
        1,
        0,
        {"lunch": 600.0},
    )
    assert (ben.called, ben.served, ben.service.max) == (2, 1, 360.0)
    assert (cara.called, cara.served, cara.service.max, cara.no_show_rate) == (0, 1, 600.0, None)


def test_grouping_by_hour_and_day_of_an_ordinary_shift(shift):
    by_hour = grouped(shift, "hour")
    assert list(by_hour) == [datetime(2026, 3, 2, 9, tzinfo=BERLIN)]
    assert by_hour[datetime(2026, 3, 2, 9, tzinfo=BERLIN)] == shift.report()
    assert grouped(shift, "day") == {date(2026, 3, 2): shift.report()}


def test_an_unknown_grouping_key_is_refused(shift):
    with pytest.raises(InvalidValue, match="not one of"):
        grouped(shift, "week")
