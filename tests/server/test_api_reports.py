"""The report routes over HTTP, and the KPI facts they read kept up with the event log."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from core.events import parse_event
from core.kpi import pauses
from core.kpi_rows import fact_rows
from core.permissions import BRANCH_MANAGER, STAFF
from server.db import SQLiteWriteQueue, session_scope
from server.models import Branch, BranchSequence, KpiFact, KpiFactMark, KpiPause, QueueEvent
from server.services import kpi_facts, kpi_summaries, queue, tenants
from server.services.branches import create_service
from server.services.kpi_facts import (
    BranchRef,
    _hold_mark,
    catch_up,
    catch_up_behind,
    stale_branches,
)
from tests.server.api_support import running_app
from tests.server.test_api_tickets import Desk, _add_user, _problem, make_desk


@pytest.fixture
def desk(db_url: str) -> Iterator[Desk]:
    """No background catch-up: whatever a report shows, the report caught up itself."""
    yield from make_desk(db_url, kpi_facts_interval_s=0)


def _serve(desk: Desk, ticket: dict[str, Any]) -> None:
    assert desk.ok(f"/counters/{desk.c1}/call-next")["id"] == ticket["id"]
    desk.ok(f"/tickets/{ticket['id']}/start")
    desk.ok(f"/tickets/{ticket['id']}/complete", {"outcome": "served"})


def _branch_report(desk: Desk, query: str = "") -> dict[str, Any]:
    response = desk.get(f"/reports/branches/{desk.world.branch_id}{query}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _facts_equal_the_log(desk: Desk, zone: str) -> None:
    branch_id = desk.world.branch_id
    with desk.world.session() as s:
        log = s.scalars(
            select(QueueEvent.payload)
            .where(QueueEvent.branch_id == branch_id, QueueEvent.status == "accepted")
            .order_by(QueueEvent.server_seq)
        ).all()
        stored = s.execute(
            select(KpiFact.ticket_id, KpiFact.ord, KpiFact.kind, KpiFact.local_day,
                   KpiFact.hour_start, KpiFact.value).where(KpiFact.branch_id == branch_id)
        ).all()  # fmt: skip
    expected = [
        (uuid.UUID(r.ticket_id), r.ord, r.kind, r.local_day, r.hour_start, r.value)
        for r in fact_rows([parse_event(p) for p in log], zone)
    ]
    assert expected
    assert sorted(tuple(r) for r in stored) == sorted(expected)
    _summaries_and_pauses_equal_the_log(desk, zone, log)


def _summaries_and_pauses_equal_the_log(desk: Desk, zone: str, log: Sequence[Any]) -> None:
    """What catching up left equals counting the whole log afresh: the day summaries
    (the incremental refresh is a rebuild) and the pauses, the open ones included."""
    world = desk.world
    events = [parse_event(p) for p in log]
    rows = [(r.local_day, r.service_id, r.kind, r.value, r.hour_start, r.no_show)
            for r in fact_rows(events, zone)]  # fmt: skip
    columns = ["local_day", "service_id", *kpi_summaries.COUNTS]
    columns += ["waits", "service_times", "served_hours"]
    expected = sorted(
        tuple(kpi_summaries._row(world.tenant_id, world.branch_id, k, v)[c] for c in columns)
        for k, v in kpi_summaries.summarize(rows).items()
    )
    table = kpi_summaries.SUMMARIES
    with world.session() as s:
        stored = s.execute(
            select(*(table.c[c] for c in columns)).where(table.c.branch_id == world.branch_id)
        ).all()
        kept = s.execute(
            select(KpiPause.counter_id, KpiPause.reason, KpiPause.started_at, KpiPause.ended_at)
            .where(KpiPause.branch_id == world.branch_id)
        ).all()  # fmt: skip
    assert sorted(tuple(r) for r in stored) == expected
    now = datetime.now(UTC)
    ended = [(p.counter_id, p.reason, p.started_at, p.ended_at) for p in pauses(events)]
    still = {(p.counter_id, p.reason, p.started_at) for p in pauses(events, until=now)}
    still -= {p[:3] for p in ended}
    assert sorted(kept, key=repr) == sorted(ended + [(*p, None) for p in still], key=repr)


def test_a_report_includes_what_was_just_done(desk: Desk) -> None:
    desk.ok(f"/counters/{desk.c1}/open")
    first, second, third = desk.issue(), desk.issue(), desk.issue()
    _serve(desk, first)
    whole = _branch_report(desk)["groups"]
    assert [g["key"] for g in whole] == [""]
    kpis = whole[0]["kpis"]
    assert (kpis["issued"], kpis["called"], kpis["served"], kpis["no_show"]) == (3, 1, 1, 0)
    assert kpis["wait_s"]["count"] == 1

    # More work: the next report folds only what came after, and agrees with the log.
    assert desk.ok(f"/counters/{desk.c1}/call-next")["id"] == second["id"]
    desk.ok(f"/tickets/{second['id']}/no-show")
    desk.ok(f"/tickets/{third['id']}/cancel", {"reason": "left"})
    kpis = _branch_report(desk)["groups"][0]["kpis"]
    assert (kpis["issued"], kpis["called"], kpis["served"], kpis["no_show"]) == (3, 2, 1, 1)
    assert kpis["cancelled"] == 1
    assert kpis["no_show_rate"] == pytest.approx(0.5)
    _facts_equal_the_log(desk, _zone(desk))
    with desk.world.session() as s:
        assert stale_branches(s, desk.world.tenant_id) == []
    desk.issue()
    behind = BranchRef(desk.world.tenant_id, desk.world.branch_id, _zone(desk))
    with desk.world.session() as s:
        assert stale_branches(s, desk.world.tenant_id) == [behind]


def _zone(desk: Desk, *, other: bool = False) -> str:
    with desk.world.session() as s:
        branch = s.get(Branch, desk.world.other_branch_id if other else desk.world.branch_id)
        assert branch is not None
        return branch.time_zone


def test_the_tenant_report_lists_every_branch_of_the_tenant_only(desk: Desk) -> None:
    desk.ok(f"/counters/{desk.c1}/open")
    _serve(desk, desk.issue())
    with desk.world.session() as session:
        other = tenants.create_tenant(session, "globex", "Globex")
        branch = tenants.create_branch(session, other.id, "Main", "MAIN", "Europe/Paris")
        service = create_service(session, other.id, branch.id, "A", "Accounts")
        queue.issue_ticket(session, tenant_id=other.id, branch_id=branch.id, service_id=service.id)
        theirs = (branch.id, service.id)
    response = desk.get("/reports/branches")
    assert response.status_code == 200, response.text
    rows = {row["branch_id"]: row for row in response.json()}
    assert set(rows) == {str(desk.world.branch_id), str(desk.world.other_branch_id)}
    assert rows[str(desk.world.branch_id)]["kpis"]["served"] == 1
    assert rows[str(desk.world.other_branch_id)]["kpis"]["issued"] == 0
    # Another tenant's branch, or a filter naming another tenant's service, is a 404.
    _problem(desk.get(f"/reports/branches/{theirs[0]}"), 404)
    _problem(desk.get(f"/reports/branches?service_id={theirs[1]}"), 404)
    # Their ticket was not folded into anything of ours, and theirs is still to do.
    with desk.world.session() as session:
        assert (
            session.scalar(select(KpiFact.ticket_id).where(KpiFact.branch_id == theirs[0])) is None
        )


def test_reports_need_their_permission(desk: Desk) -> None:
    _add_user(desk.world, "clerk", STAFF)
    _add_user(desk.world, "boss", BRANCH_MANAGER)
    clerk = desk.world.login("clerk")["access_token"]
    boss = desk.world.login("boss")["access_token"]
    branch = f"/reports/branches/{desk.world.branch_id}"
    _problem(desk.get(branch, token=clerk), 403)
    _problem(desk.get("/reports/branches", token=clerk), 403)
    # A branch manager reads their branch, not the tenant nor another branch.
    assert desk.get(branch, token=boss).status_code == 200
    _problem(desk.get("/reports/branches", token=boss), 403)
    _problem(desk.get(f"/reports/branches/{desk.world.other_branch_id}", token=boss), 403)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?from=2026-03-05&to=2026-03-01", "to"),
        ("?from=yesterday", "from"),
        ("?group_by=week", "group_by"),
        ("?service_id=not-a-uuid", "service_id"),
    ],
)
def test_bad_report_queries_are_422_naming_the_field(desk: Desk, query: str, field: str) -> None:
    problem = _problem(desk.get(f"/reports/branches/{desk.world.branch_id}{query}"), 422)
    assert field in str(problem)


def test_grouped_and_filtered_reports(desk: Desk) -> None:
    desk.ok(f"/counters/{desk.c1}/open")
    _serve(desk, desk.issue())
    desk.issue(service=desk.loans)
    by_service = _branch_report(desk, "?group_by=service")["groups"]
    issued = {g["key"]: g["kpis"]["issued"] for g in by_service}
    assert issued == {str(desk.accounts): 1, str(desk.loans): 1}
    loans = _branch_report(desk, f"?service_id={desk.loans}")["groups"][0]["kpis"]
    assert (loans["issued"], loans["served"]) == (1, 0)
    # A range with nothing in it is a report of zeros, not an error.
    empty = _branch_report(desk, "?from=2001-01-01&to=2001-01-31")["groups"][0]["kpis"]
    assert (empty["issued"], empty["wait_s"]["count"], empty["sla_attainment"]) == (0, 0, None)


def test_a_new_time_zone_buckets_the_facts_again(desk: Desk) -> None:
    desk.ok(f"/counters/{desk.c1}/open")
    _serve(desk, desk.issue())
    _branch_report(desk)
    _facts_equal_the_log(desk, _zone(desk))
    with desk.world.session() as s:
        s.execute(
            update(Branch)
            .where(Branch.id == desk.world.branch_id)
            .values(time_zone="Pacific/Kiritimati")
        )
    _branch_report(desk)
    _facts_equal_the_log(desk, "Pacific/Kiritimati")
    with desk.world.session() as s:
        mark = s.get(KpiFactMark, desk.world.branch_id)
        assert mark is not None
        assert mark.time_zone == "Pacific/Kiritimati"


def test_the_service_catches_up_in_the_background(db_url: str) -> None:
    for desk in make_desk(db_url, kpi_facts_interval_s=0.05):
        desk.ok(f"/counters/{desk.c1}/open")
        _serve(desk, desk.issue())
        desk.issue()
        deadline = time.monotonic() + 20
        while True:
            with desk.world.session() as s:
                last = s.scalar(
                    select(BranchSequence.last_server_seq).where(
                        BranchSequence.branch_id == desk.world.branch_id
                    )
                )
                mark = s.get(KpiFactMark, desk.world.branch_id)
                if mark is not None and mark.through_seq == last:
                    break
            assert time.monotonic() < deadline, "the background never caught the branch up"
            time.sleep(0.05)
        # No report was asked for, and the facts are the log's.
        _facts_equal_the_log(desk, _zone(desk))


# On SQLite the rounds run in the event loop (the next test).
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_shutting_down_waits_for_a_background_round_under_way(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service ends while a background round runs in its worker thread: shutdown
    waits for the round's current step instead of leaving the thread working (and
    a connection checked out) after the engine was disposed."""
    running, seen_stop, seeded = threading.Event(), threading.Event(), threading.Event()
    ended: list[float] = []

    def slow_round(factory: Any, stop: threading.Event | None = None) -> int:
        if not seeded.is_set():  # a round holding the write lock would block the seeding
            return 0
        with session_scope(factory) as session:
            session.execute(select(Branch.id)).all()  # a connection is checked out
            running.set()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
                time.sleep(0.01)
            if stop is not None and stop.is_set():
                seen_stop.set()
            time.sleep(0.2)  # the step under way finishes
        ended.append(time.monotonic())
        return 0

    monkeypatch.setattr(kpi_facts, "catch_up_stale", slow_round)
    with running_app(db_url, kpi_facts_interval_s=0.01) as world:
        seeded.set()
        assert running.wait(10)
        engine = world.app.state.engine
    shut_at = time.monotonic()
    assert seen_stop.is_set()  # the round was told to stop, not left to finish its list
    assert ended  # and had ended by the time the service was down
    assert ended[0] <= shut_at
    assert engine.pool.checkedout() == 0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_on_sqlite_the_background_steps_are_turns_of_the_event_loop(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step runs in the event loop's thread within a writer's turn; shutting down
    during the pause after a step ends the round there, with nothing left checked
    out and the turn free."""
    for bound in ("BACKGROUND_FIRST_STEP_EVENTS", "BACKGROUND_MIN_STEP_EVENTS"):
        monkeypatch.setattr(kpi_facts, bound, 1)
    monkeypatch.setattr(kpi_facts, "BACKGROUND_STEP_EVENTS", 1)
    monkeypatch.setattr(kpi_facts, "BACKGROUND_PAUSE_FACTOR", 10_000.0)  # a pause of seconds
    steps: list[tuple[bool, bool]] = []  # (in the event loop's thread, holding the turn)
    stepped = threading.Event()
    real_step = kpi_facts._catch_up_step

    def in_event_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def step(session: Any, branch: Any, *, wait: bool, size: int) -> int | None:
        steps.append((in_event_loop(), app.state.write_queue.locked()))
        folded = real_step(session, branch, wait=wait, size=size)
        stepped.set()
        return folded

    monkeypatch.setattr(kpi_facts, "_catch_up_step", step)
    desks = make_desk(db_url, kpi_facts_interval_s=0.05)
    desk = next(desks)
    app = desk.world.app
    engine, queue = app.state.engine, app.state.write_queue
    desk.ok(f"/counters/{desk.c1}/open")
    desk.issue()
    assert stepped.wait(10)
    started = time.monotonic()
    with pytest.raises(StopIteration):
        next(desks)  # the service shuts down
    assert time.monotonic() - started < 5  # not after the pause that follows the step
    assert steps == [(True, True)]
    assert engine.pool.checkedout() == 0
    assert not queue.locked()


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("busy", [False, True])
def test_on_sqlite_the_background_pauses_briefly_while_the_writer_is_idle(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, busy: bool
) -> None:
    """Once other writers held the turn less than IDLE_SHARE of an IDLE_WINDOW_S, the
    pauses are IDLE_PAUSE_FACTOR times the step, not BACKGROUND_PAUSE_FACTOR."""
    for bound in ("BACKGROUND_FIRST_STEP_EVENTS", "BACKGROUND_MIN_STEP_EVENTS"):
        monkeypatch.setattr(kpi_facts, bound, 2)
    monkeypatch.setattr(kpi_facts, "BACKGROUND_STEP_EVENTS", 2)
    monkeypatch.setattr(kpi_facts, "BACKGROUND_PAUSE_FACTOR", 1000.0)  # a step's ms: seconds
    monkeypatch.setattr(kpi_facts, "IDLE_WINDOW_S", 0.05)  # judged after two watched pauses
    queue = desk.world.app.state.write_queue
    desk.ok(f"/counters/{desk.c1}/open")
    for _ in range(7):
        desk.issue()
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def watched_pause(seconds: float) -> None:
        pauses.append(seconds)
        if busy:  # another writer holds the turn through the whole pause
            holder = threading.Thread(target=lambda: (queue.take(), time.sleep(0.03)))
            holder.start()
            holder.join()
            queue.release()
        else:
            await real_sleep(0.03)

    monkeypatch.setattr(kpi_facts.asyncio, "sleep", watched_pause)
    stop = threading.Event()
    assert asyncio.run(kpi_facts.catch_up_stale_in_loop(desk.world.factory, queue, stop)) == 8
    assert len(pauses) == 4
    assert pauses[0] > 0.5  # nothing watched yet: the busy pause
    if busy:
        assert all(p > 0.5 for p in pauses)
    else:
        assert pauses[-1] < 0.5  # a thousandth of the busy pause per ms of the step


def test_the_write_queue_counts_how_long_the_turn_was_held() -> None:
    queue = SQLiteWriteQueue()
    assert queue.busy_seconds() == 0.0
    assert queue.take()
    time.sleep(0.05)
    during = queue.busy_seconds()
    queue.release()
    after = queue.busy_seconds()
    time.sleep(0.05)
    assert 0.05 <= during <= after < 1.0
    assert queue.busy_seconds() == after  # idle time is not counted

    async def unit() -> None:
        await queue.wait_turn()
        time.sleep(0.05)
        queue.end_turn()

    asyncio.run(unit())
    assert queue.busy_seconds() >= after + 0.05


def _hold(desk: Desk, ref: BranchRef, holding: threading.Event, release: threading.Event) -> None:
    with desk.world.session() as s:
        assert _hold_mark(s, ref, wait=True) is not None
        holding.set()
        release.wait(10)


# Row locks are PostgreSQL's; on SQLite writers are serialised by the write lock.
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_branch_being_caught_up_is_skipped_by_the_background(db_url: str) -> None:
    for desk in make_desk(db_url, kpi_facts_interval_s=0):
        desk.issue()
        ref = BranchRef(desk.world.tenant_id, desk.world.branch_id, _zone(desk))
        assert catch_up(desk.world.factory, ref) == 1  # the mark exists from here on
        desk.issue()
        holding, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=_hold, args=(desk, ref, holding, release))
        holder.start()
        assert holding.wait(10)
        try:
            assert catch_up(desk.world.factory, ref, wait=False) is None
        finally:
            release.set()
            holder.join()
        assert catch_up(desk.world.factory, ref, wait=False) == 1
        _facts_equal_the_log(desk, _zone(desk))


def test_pause_time_by_reason_is_folded_from_the_log(desk: Desk) -> None:
    for counter in (desk.c1, desk.c2):
        desk.ok(f"/counters/{counter}/open")
    desk.ok(f"/counters/{desk.c1}/pause", {"reason": "Lunch"})
    desk.ok(f"/counters/{desk.c2}/pause", {"reason": "Training"})
    desk.ok(f"/counters/{desk.c1}/resume")
    desk.ok(f"/counters/{desk.c1}/pause", {"reason": "Lunch"})
    desk.ok(f"/counters/{desk.c2}/close")  # a close ends a pause too
    desk.ok(f"/counters/{desk.c1}/close")
    with desk.world.session() as s:
        log = s.scalars(
            select(QueueEvent.payload)
            .where(QueueEvent.branch_id == desk.world.branch_id, QueueEvent.status == "accepted")
            .order_by(QueueEvent.server_seq)
        ).all()
    expected = pauses([parse_event(p) for p in log])
    assert [p.reason for p in expected] == ["Lunch", "Training", "Lunch"]
    by_reason: dict[str, float] = {}
    for pause in expected:
        by_reason[pause.reason] = by_reason.get(pause.reason, 0.0) + pause.seconds
    kpis = _branch_report(desk)["groups"][0]["kpis"]
    assert kpis["pause_seconds_by_reason"] == pytest.approx(by_reason)
    grouped = _branch_report(desk, "?group_by=counter")["groups"]
    per_counter = {g["key"]: set(g["kpis"]["pause_seconds_by_reason"]) for g in grouped}
    assert per_counter == {str(desk.c1): {"Lunch"}, str(desk.c2): {"Training"}}


def test_only_branches_behind_their_log_are_caught_up(desk: Desk) -> None:
    world = desk.world
    both = [world.branch_id, world.other_branch_id]
    desk.issue()
    desk.issue()
    assert catch_up_behind(world.factory, world.tenant_id, both) == 2
    assert catch_up_behind(world.factory, world.tenant_id, both) == 0  # nothing new
    desk.issue()
    assert catch_up_behind(world.factory, world.tenant_id, both) == 1  # only what came after
    # Branches are caught up only as the tenant's they are.
    desk.issue()
    assert catch_up_behind(world.factory, uuid.uuid4(), both) == 0
    assert catch_up_behind(world.factory, world.tenant_id, both) == 1


def test_the_background_catch_up_takes_short_steps_and_stops_when_told(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each background step folds the log rows it is given in its own transaction and
    is followed by a pause BACKGROUND_PAUSE_FACTOR times as long; a stop set during a
    round ends it after the step under way, and the next round picks up from the mark."""
    for bound in ("BACKGROUND_FIRST_STEP_EVENTS", "BACKGROUND_MIN_STEP_EVENTS"):
        monkeypatch.setattr(kpi_facts, bound, 2)
    monkeypatch.setattr(kpi_facts, "BACKGROUND_STEP_EVENTS", 2)

    class Stop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            pauses.append(timeout or 0.0)
            return super().wait(timeout)

    stop = Stop()
    steps: list[int | None] = []
    took: list[float] = []
    pauses: list[float] = []
    real_step = kpi_facts._catch_up_step

    def step(session: Any, branch: Any, *, wait: bool, size: int) -> int | None:
        started = time.monotonic()
        folded = real_step(session, branch, wait=wait, size=size)
        took.append(time.monotonic() - started)
        steps.append(folded)
        if len(steps) == 2:
            stop.set()
        return folded

    monkeypatch.setattr(kpi_facts, "_catch_up_step", step)
    desk.ok(f"/counters/{desk.c1}/open")
    _serve(desk, desk.issue())
    desk.issue()
    with session_scope(desk.world.factory) as session:
        logged = len(session.scalars(select(QueueEvent.server_seq)).all())
    assert logged > 4
    assert kpi_facts.catch_up_stale(desk.world.factory, stop) == 4
    assert steps == [2, 2]
    assert len(pauses) == 1  # after the first step; the stop came during the second
    assert pauses[0] >= kpi_facts.BACKGROUND_PAUSE_FACTOR * took[0] > 0
    assert kpi_facts.catch_up_stale(desk.world.factory) == logged - 4
    assert all(n is not None and n <= 2 for n in steps)
    _facts_equal_the_log(desk, _zone(desk))


def test_background_steps_are_sized_to_take_a_few_milliseconds() -> None:
    """A step that took longer than BACKGROUND_STEP_S makes the next one smaller, a
    quicker one makes it larger, within the bounds."""
    target = kpi_facts.BACKGROUND_STEP_S
    assert kpi_facts.next_background_step(20, 4 * target) == 5
    assert kpi_facts.next_background_step(10, target / 2) == 20
    assert kpi_facts.next_background_step(10, target) == 10
    assert kpi_facts.next_background_step(10, 100 * target) == kpi_facts.BACKGROUND_MIN_STEP_EVENTS
    assert kpi_facts.next_background_step(40, target / 100) == kpi_facts.BACKGROUND_STEP_EVENTS
    assert kpi_facts.next_background_step(10, 0.0) == kpi_facts.BACKGROUND_STEP_EVENTS


def test_the_background_catch_up_adapts_its_steps_to_their_pace(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slow steps shrink to the lower bound; the round still folds the whole log."""
    sizes: list[int] = []
    real_step = kpi_facts._catch_up_step

    def slow_step(session: Any, branch: Any, *, wait: bool, size: int) -> int | None:
        sizes.append(size)
        time.sleep(2 * kpi_facts.BACKGROUND_STEP_S)
        return real_step(session, branch, wait=wait, size=size)

    monkeypatch.setattr(kpi_facts, "_catch_up_step", slow_step)
    monkeypatch.setattr(kpi_facts, "BACKGROUND_PAUSE_FACTOR", 0.0)
    desk.ok(f"/counters/{desk.c1}/open")
    for _ in range(8):
        _serve(desk, desk.issue())
    with session_scope(desk.world.factory) as session:
        logged = len(session.scalars(select(QueueEvent.server_seq)).all())
    assert kpi_facts.catch_up_stale(desk.world.factory) == logged
    assert sizes[0] == kpi_facts.BACKGROUND_FIRST_STEP_EVENTS
    assert len(sizes) > 2
    assert set(sizes[1:]) == {kpi_facts.BACKGROUND_MIN_STEP_EVENTS}
    _facts_equal_the_log(desk, _zone(desk))


def test_a_summary_that_does_not_hold_what_a_catch_up_removes_is_counted_again(
    desk: Desk,
) -> None:
    """Catch-ups change the summaries by difference; a stored row that cannot hold
    the facts removed (here: its waits lost, its counts zeroed) is recounted from the
    facts rather than left wrong or driven negative."""
    desk.ok(f"/counters/{desk.c1}/open")
    first = desk.issue()
    desk.issue()
    _serve(desk, first)
    _branch_report(desk)  # caught up: the summary holds the first ticket's wait
    table = kpi_summaries.SUMMARIES
    broken = dict.fromkeys(kpi_summaries.COUNTS, 0) | {"waits": b""}
    with desk.world.session() as s:
        s.execute(update(table).where(table.c.branch_id == desk.world.branch_id).values(broken))
        s.commit()
    desk.ok(f"/counters/{desk.c1}/call-next")  # rewrites the second ticket's facts
    kpis = _branch_report(desk)["groups"][0]["kpis"]
    assert (kpis["issued"], kpis["called"], kpis["served"]) == (2, 2, 1)
    _facts_equal_the_log(desk, _zone(desk))


def test_pauses_open_across_catch_up_steps_are_carried_on(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Caught up two log rows at a time, pauses still come out whole, the one left
    open is kept open, and the day summaries equal counting the log afresh."""
    monkeypatch.setattr(kpi_facts, "STEP_EVENTS", 2)
    for counter in (desk.c1, desk.c2):
        desk.ok(f"/counters/{counter}/open")
    desk.ok(f"/counters/{desk.c1}/pause", {"reason": "Lunch"})
    ticket = desk.issue()
    desk.issue()
    desk.ok(f"/counters/{desk.c2}/pause", {"reason": "Training"})
    desk.ok(f"/counters/{desk.c1}/resume")
    _serve(desk, ticket)
    desk.ok(f"/counters/{desk.c2}/close")
    desk.ok(f"/counters/{desk.c1}/pause", {"reason": "Paperwork"})
    kpis = _branch_report(desk)["groups"][0]["kpis"]
    assert set(kpis["pause_seconds_by_reason"]) == {"Lunch", "Training"}
    _facts_equal_the_log(desk, _zone(desk))
    desk.ok(f"/counters/{desk.c1}/resume")  # the open pause ends in a later catch-up
    kpis = _branch_report(desk)["groups"][0]["kpis"]
    assert set(kpis["pause_seconds_by_reason"]) == {"Lunch", "Paperwork", "Training"}
    _facts_equal_the_log(desk, _zone(desk))
