"""How long the service takes for the tenant-wide report by branch, on PostgreSQL.

A throwaway PostgreSQL cluster (the tests' ``initdb``/``pg_ctl`` helpers, in a
temporary directory, stopped and removed at the end) holds a tenant of 100 branches
(10 with ``--quick``), migrated with :func:`server.migrate.upgrade` and seeded with
the service's own functions: each branch with three services (two with an SLA
target), six counters, and the KPI facts of 20,000 tickets (2,000 with ``--quick``).

One branch's history is generated with the core (:func:`core.machine.decide` and
``apply``): 250 tickets a weekday from 08:00 to 17:30 with a morning and an afternoon
peak, six counters calling the next ticket, a lunch pause each, about 1 % walking away
unserved, 5 % no-shows, 2 % recalled, 2 % transferred, service of 2 to 12 minutes
(a mean wait of about 4.5 minutes), the counters closed after 18:00 and the tickets
left waiting cancelled. Its fact rows come from :func:`core.kpi_rows.fact_rows` and go
in with :func:`server.services.kpi_facts.insert_facts`; the other branches get a copy
made in SQL (``INSERT ... SELECT``: fresh time-ordered ticket ids, each branch's own
services, counters and staff, the services rotated so each branch's SLA differs), in
day order as a running service would have written them. Every branch's counter events
(open, pause, resume, close) are in ``queue_events``; the ticket events are not (their
facts are already there). Each branch's day summaries are counted from its facts
(:func:`server.services.kpi_summaries.rebuild`) and its pauses folded from its counter
events (:func:`fold_counter_events`), the time taken printed; ``branch_sequences`` and
``kpi_fact_marks`` say the facts are caught up, as the background catch-up leaves
them. Then VACUUM ANALYZE. The
cluster runs with the tests' settings (PostgreSQL's defaults, durability off).

value = seconds for the work of ``GET /api/v1/reports/branches``: read the branches
and the service targets, catch up the branches that are behind
(:func:`catch_up_behind`: one query finds none) and
:func:`server.services.reports.kpi_reports` over all of them in a read-only
transaction; median of 3 runs. baseline = seconds for one hand-written SQL
aggregate over the same table in the same run (``count(*)`` and ``avg(value)`` of the
tenant's called segments), median of 3; ratio = value / baseline. ``ok`` when
value <= 3.0 s. The first branch's report is checked against
:func:`core.kpi_rows.reference` over its events, and every branch's ticket count.
"""

from __future__ import annotations

import heapq
import itertools
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from _report import parse_args, report
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from core import commands as cmd
from core.errors import DomainError
from core.events import EventBase
from core.ids import uuid7
from core.kpi_rows import ALL, fact_rows, reference
from core.machine import apply, decide
from core.state import BranchState, CounterConfig, CounterStatus, ServiceConfig, TicketStatus
from core.values import TicketNumber
from server.db import make_engine, make_session_factory, session_scope
from server.migrate import upgrade
from server.models import Branch, BranchSequence, KpiFactMark, Service
from server.services import kpi_summaries
from server.services.branches import create_branch, create_counter, create_service
from server.services.kpi_facts import BranchRef, catch_up_behind, fold_counter_events, insert_facts
from server.services.queue_records import EventRow, write_events
from server.services.reports import kpi_reports
from server.services.tenants import create_tenant
from tests.server.conftest import (
    PostgresCluster,
    _cluster_parent_dir,
    _os_user_for_postgres,
    _pg_bindir,
    _start_cluster,
)

ZONE: Final = "Europe/Berlin"
FIRST_DAY: Final = date(2025, 1, 6)  # a Monday
PER_DAY: Final = 250  # tickets a weekday
TARGET_S: Final = 3.0
RUNS: Final = 3
SERVICES: Final = (("A", "Accounts", 600), ("B", "Benefits", 900), ("C", "Cards", None))
COUNTERS: Final = 6
_COPY_BITS: Final = ~(0xFFFF << 32)


@dataclass(frozen=True)
class Site:
    """One seeded branch and the ids its facts and events use."""

    id: uuid.UUID
    services: list[str]
    counters: list[str]
    staff: list[str]


# -- the PostgreSQL cluster ---------------------------------------------------------


@contextmanager
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway cluster in a temporary directory, stopped and deleted afterwards."""
    bindir = _pg_bindir()
    if bindir is None:
        sys.exit("reports_service: PostgreSQL (initdb, pg_ctl) is not installed")
    os_user = _os_user_for_postgres()
    run_as = ["runuser", "-u", os_user, "--"] if os_user else []
    root = Path(tempfile.mkdtemp(prefix="qd-reports-service-", dir=_cluster_parent_dir()))
    try:
        port = _start_cluster(bindir, root, os_user)
        try:
            yield PostgresCluster(host="127.0.0.1", port=port)
        finally:
            stop = ["-D", str(root / "data"), "-m", "fast", "stop"]
            subprocess.run([*run_as, str(bindir / "pg_ctl"), *stop], capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- one branch's history, through the core -----------------------------------------


def branch_history(site: Site, tickets: int, seed: int = 2025) -> list[EventBase]:
    """The events of ``tickets`` tickets over as many weekdays as they take."""
    rng = random.Random(seed)
    services = [
        ServiceConfig(sid, code, name, target)
        for sid, (code, name, target) in zip(site.services, SERVICES, strict=True)
    ]
    profile = tuple(site.services)
    state = BranchState.new(
        str(site.id),
        ZONE,
        services,
        [CounterConfig(c, f"Counter {i + 1}", profile) for i, c in enumerate(site.counters)],
    )
    events: list[EventBase] = []
    day, left = FIRST_DAY, tickets
    while left:
        if day.weekday() < 5:
            count = min(left, PER_DAY)
            _simulate_day(state, events, site, day, count, rng)
            left -= count
        day += timedelta(days=1)
    return events


def _simulate_day(
    state: BranchState,
    events: list[EventBase],
    site: Site,
    day: date,
    tickets: int,
    rng: random.Random,
) -> None:
    zone = ZoneInfo(ZONE)

    def local(hour: int, minute: int = 0) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)

    def run(command: cmd.Command) -> None:
        for event in decide(state, command):
            apply(state, event)
            events.append(event)

    opens, last_arrival, closes, lunch = local(8), local(17, 30), local(18), local(12)
    queue: list[tuple[datetime, int, str, Any]] = []
    order = itertools.count()

    def later(at: datetime, what: str, data: Any = None, seconds: float = 0.0) -> None:
        heapq.heappush(queue, (at + timedelta(seconds=seconds), next(order), what, data))

    for i in range(COUNTERS):
        later(opens, "open", i)
    span = (last_arrival - opens).total_seconds()
    for _ in range(tickets):
        peak = span * (0.25 if rng.random() < 0.55 else 0.7)
        later(opens, "arrive", seconds=round(rng.triangular(0, span, peak), 3))
    idle: set[int] = set()
    paused: set[int] = set()
    numbers = dict.fromkeys(site.services, 0)
    at = opens

    def wake(at: datetime) -> None:  # idle counters notice a new ticket within seconds
        for i in sorted(idle):
            later(at, "free", i, seconds=rng.uniform(5, 45))
        idle.clear()

    def waiting() -> bool:
        return any(state.waiting_in(s) for s in site.services)

    while queue:
        at, _, what, data = heapq.heappop(queue)
        i, ticket = data if isinstance(data, tuple) else (data, None)
        counter = site.counters[i] if i is not None else ""
        staff = site.staff[i] if i is not None else None
        if what == "open":
            run(cmd.OpenCounter(at=at, counter_id=counter, actor_id=staff))
            later(at, "free", i)
        elif what == "arrive":
            service = rng.choices(site.services, weights=(5, 3, 2))[0]
            numbers[service] += 1
            code = SERVICES[site.services.index(service)][0]
            # A UUIDv7 as the service makes them, with 0000 where copies put their branch.
            ticket_id = str(uuid.UUID(int=uuid7(int(at.timestamp() * 1000)).int & _COPY_BITS))
            number = TicketNumber(code, numbers[service])
            run(cmd.IssueTicket(at=at, service_id=service, number=number, ticket_id=ticket_id))
            if rng.random() < 0.05:  # gives up when still waiting then
                later(at, "walk_away", (None, ticket_id), seconds=rng.uniform(120, 900))
            wake(at)
        elif what == "walk_away":
            if state.tickets[ticket].status is TicketStatus.WAITING:
                run(cmd.Cancel(at=at, ticket_id=ticket, reason="left"))
        elif what == "free":
            if at >= closes or (at >= last_arrival and not waiting()):
                run(cmd.CloseCounter(at=at, counter_id=counter, actor_id=staff))
            elif i not in paused and at >= lunch + timedelta(minutes=10 * i):
                paused.add(i)
                run(cmd.PauseCounter(at=at, counter_id=counter, reason="Lunch", actor_id=staff))
                later(at, "resume", i, seconds=rng.uniform(1500, 2100))
            else:
                try:
                    run(cmd.CallNext(at=at, counter_id=counter, actor_id=staff))
                except DomainError:  # nothing waiting: until the next arrival
                    idle.add(i)
                    continue
                called = state.counters[counter].current_ticket_id
                fate = rng.random()
                if fate < 0.05:
                    later(at, "no_show", (i, called), seconds=rng.uniform(60, 180))
                elif fate < 0.07:
                    later(at, "recall", (i, called), seconds=rng.uniform(45, 90))
                else:
                    later(at, "start", (i, called), seconds=rng.uniform(15, 60))
        elif what == "resume":
            run(cmd.ResumeCounter(at=at, counter_id=counter, actor_id=staff))
            later(at, "free", i)
        elif what == "recall":
            run(cmd.Recall(at=at, ticket_id=ticket, actor_id=staff))
            later(at, "start", (i, ticket), seconds=rng.uniform(20, 60))
        elif what == "no_show":
            run(cmd.MarkNoShow(at=at, ticket_id=ticket, actor_id=staff))
            later(at, "free", i, seconds=5)
        elif what == "start":
            run(cmd.StartService(at=at, ticket_id=ticket, actor_id=staff))
            duration = rng.uniform(120, 720)
            if rng.random() < 0.03:
                later(at, "transfer", (i, ticket), seconds=duration / 3)
            else:
                later(at, "complete", (i, ticket), seconds=duration)
        elif what == "transfer":
            current = state.tickets[ticket].service_id
            to = site.services[(site.services.index(current) + 1) % len(site.services)]
            run(cmd.Transfer(at=at, ticket_id=ticket, to_service_id=to, actor_id=staff))
            wake(at)
            later(at, "free", i, seconds=rng.uniform(5, 30))
        elif what == "complete":
            run(cmd.Complete(at=at, ticket_id=ticket, actor_id=staff))
            later(at, "free", i, seconds=rng.uniform(5, 30))
    end = max(at, closes)
    for service in site.services:
        for left in state.waiting_in(service):
            run(cmd.Cancel(at=end, ticket_id=left.id, reason="closed"))
    for i, counter in enumerate(site.counters):
        if state.counters[counter].status is not CounterStatus.CLOSED:
            run(cmd.CloseCounter(at=end, counter_id=counter, actor_id=site.staff[i]))


# -- seeding --------------------------------------------------------------------------


def seed(factory: sessionmaker[Session], branches: int) -> tuple[uuid.UUID, list[Site]]:
    """The tenant, its branches, services and counters, through the service's functions."""
    with session_scope(factory) as session:
        tenant = create_tenant(session, "bench", "Benchmark tenant")
        sites = []
        for b in range(branches):
            branch = create_branch(session, tenant.id, f"Branch {b + 1}", f"B{b + 1:03d}", ZONE)
            services = [
                create_service(session, tenant.id, branch.id, code, name, target_wait_s=target)
                for code, name, target in SERVICES
            ]
            profile = [s.id for s in services]
            counters = [
                create_counter(session, tenant.id, branch.id, k + 1, f"Counter {k + 1}", profile)
                for k in range(COUNTERS)
            ]
            staff = [str(uuid.UUID(int=random.Random(b * 100 + k).getrandbits(128), version=4))
                     for k in range(COUNTERS)]  # fmt: skip
            sites.append(
                Site(branch.id, [str(s.id) for s in services], [str(c.id) for c in counters], staff)
            )
        return tenant.id, sites


def fill(
    engine: Engine, factory: sessionmaker[Session], tenant_id: uuid.UUID, sites: list[Site],
    events: list[EventBase],
) -> None:  # fmt: skip
    """The first branch's facts and counter events, copied in SQL to the other branches."""
    first = sites[0]
    counter_events = [e for e in events if getattr(e, "ticket_id", None) is None]
    last = len(counter_events)
    with session_scope(factory) as session:
        insert_facts(session, tenant_id, first.id, fact_rows(events, ZONE))
        rows = [EventRow(e, server_seq=seq) for seq, e in enumerate(counter_events, start=1)]
        write_events(session, tenant_id, first.id, rows)
        for site in sites:
            session.execute(insert(BranchSequence), {"branch_id": site.id, "last_server_seq": last})
            session.execute(
                insert(KpiFactMark), {"branch_id": site.id, "through_seq": last, "time_zone": ZONE}
            )
    mapping = []
    for b, site in enumerate(sites[1:], start=1):
        shift = b % len(SERVICES)  # the branch's services take the template's in turn
        rotated = site.services[shift:] + site.services[:shift]
        for old, new in zip(first.services + first.counters + first.staff,
                            rotated + site.counters + site.staff, strict=True):  # fmt: skip
            mapping.append({"branch_id": site.id, "n": b, "old": old, "new": new})
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL jit = off"))
        conn.execute(
            text("CREATE TEMP TABLE bench_ids (branch_id uuid, n int, old text, new text)")
        )
        conn.execute(text("INSERT INTO bench_ids VALUES (:branch_id, :n, :old, :new)"), mapping)
        conn.execute(text("ANALYZE bench_ids"))
        for statement in _COPIES:
            conn.execute(text(statement), {"first": first.id})
    started = time.perf_counter()
    with engine.begin() as conn:
        for site in sites:
            kpi_summaries.rebuild(conn, tenant_id, site.id)
            branch = BranchRef(tenant_id, site.id, ZONE)
            fold_counter_events(conn, branch, after=0, through=last)
    print(
        f"summaries and pauses of {len(sites)} branches counted in"
        f" {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


# A copy's ticket id is the template's with the branch number in the 16 bits the
# template leaves 0 (the first four digits of the last group): unique, time-ordered.
_COPIES = (
    "INSERT INTO kpi_facts (ticket_id, ord, tenant_id, branch_id, kind, service_id, counter_id,"
    " staff_id, local_day, hour_start, value, no_show)"
    " SELECT overlay(f.ticket_id::text PLACING lpad(to_hex(b.n), 4, '0') FROM 25 FOR 4)::uuid,"
    " f.ord, f.tenant_id, b.branch_id, f.kind, s.new, c.new, p.new, f.local_day, f.hour_start,"
    " f.value, f.no_show"
    " FROM (SELECT DISTINCT branch_id, n FROM bench_ids) b CROSS JOIN kpi_facts f"
    " LEFT JOIN bench_ids s ON s.branch_id = b.branch_id AND s.old = f.service_id"
    " LEFT JOIN bench_ids c ON c.branch_id = b.branch_id AND c.old = f.counter_id"
    " LEFT JOIN bench_ids p ON p.branch_id = b.branch_id AND p.old = f.staff_id"
    " WHERE f.branch_id = :first",
    "INSERT INTO queue_events (id, tenant_id, branch_id, server_seq, type, occurred_at,"
    " received_at, payload, status)"
    " SELECT md5(b.branch_id::text || e.id::text)::uuid, e.tenant_id, b.branch_id, e.server_seq,"
    " e.type, e.occurred_at, e.received_at, e.payload || jsonb_build_object("
    "'id', md5(b.branch_id::text || e.id::text)::uuid::text, 'branch_id', b.branch_id::text,"
    " 'counter_id', c.new, 'actor_id', p.new), e.status"
    " FROM (SELECT DISTINCT branch_id FROM bench_ids) b CROSS JOIN queue_events e"
    " JOIN bench_ids c ON c.branch_id = b.branch_id AND c.old = e.payload->>'counter_id'"
    " JOIN bench_ids p ON p.branch_id = b.branch_id AND p.old = e.payload->>'actor_id'"
    " WHERE e.branch_id = :first ORDER BY b.branch_id, e.server_seq",
)


# -- the measurements -----------------------------------------------------------------


def tenant_report(
    factory: sessionmaker[Session], reader: sessionmaker[Session], tenant_id: uuid.UUID
) -> dict[uuid.UUID, Any]:
    """What ``GET /api/v1/reports/branches`` does, without HTTP and JSON."""
    with session_scope(factory) as session:
        branches = list(
            session.scalars(
                select(Branch).where(Branch.tenant_id == tenant_id).order_by(Branch.code)
            )
        )
        rows = session.execute(
            select(Service.id, Service.target_wait_s).where(Service.tenant_id == tenant_id)
        )
        targets = {str(service_id): target for service_id, target in rows}
    catch_up_behind(factory, tenant_id, [b.id for b in branches])
    with session_scope(reader) as reading:
        return kpi_reports(
            reading,
            tenant_id=tenant_id,
            zones={b.id: b.time_zone for b in branches},
            targets=targets,
            filters=None,
        )


def baseline(engine: Engine, tenant_id: uuid.UUID) -> float:
    with engine.connect() as conn:
        started = time.perf_counter()
        conn.execute(
            text(
                "SELECT count(*), avg(value) FROM kpi_facts WHERE tenant_id = :tenant"
                " AND kind = 'segment' AND value IS NOT NULL"
            ),
            {"tenant": tenant_id},
        ).one()
        return time.perf_counter() - started


def main() -> None:
    args = parse_args(__doc__ or "")
    branches, tickets = (10, 2_000) if args.quick else (100, 20_000)
    with postgres() as cluster:
        url = cluster.url("postgres")
        upgrade(url)
        engine = make_engine(url)
        try:
            factory = make_session_factory(engine)
            reader = make_session_factory(engine, read_only=True)
            started = time.perf_counter()
            tenant_id, sites = seed(factory, branches)
            events = branch_history(sites[0], tickets)
            generated = time.perf_counter()
            fill(engine, factory, tenant_id, sites, events)
            print(
                f"{branches} branches x {tickets:,} tickets: {len(events):,} events generated in"
                f" {generated - started:.1f} s, stored in {time.perf_counter() - generated:.1f} s",
                file=sys.stderr,
            )
            baselines, values = [], []
            for _ in range(RUNS):
                baselines.append(baseline(engine, tenant_id))
                started = time.perf_counter()
                result = tenant_report(factory, reader, tenant_id)
                values.append(time.perf_counter() - started)
        finally:
            engine.dispose()
    targets = {s: t for s, (_, _, t) in zip(sites[0].services, SERVICES, strict=True)}
    expected = reference(events, targets=targets, time_zone=ZONE)
    assert result[sites[0].id] == expected, (result[sites[0].id], expected)
    assert all(r[ALL].issued == tickets for r in result.values()), "a branch lost tickets"
    value, base = statistics.median(values), statistics.median(baselines)
    ratio = value / base
    print(
        f"report by branch: {value:.3f} s (runs {', '.join(f'{v:.3f}' for v in values)});"
        f" SQL count/avg of the waits: {base:.3f} s; ratio {ratio:.1f}",
        file=sys.stderr,
    )
    report(
        "reports_service",
        value=value,
        unit="s",
        baseline=base,
        ratio=ratio,
        target=f"<= {TARGET_S} s",
        ok=value <= TARGET_S,
        branches=branches,
        tickets=tickets,
    )


if __name__ == "__main__":
    main()
