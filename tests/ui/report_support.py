"""A branch cache with a few days of simulated work, for the report and dashboard tests.

:func:`simulate` runs real commands through :meth:`LocalCache.execute` (as the
console does offline): tickets in two services, called at two counters, served,
marked no-show, transferred, parked and returned, recalled and cancelled, and
counters paused with reasons. Everything is seeded, so a test sees the same
figures every run; the tests compare what the window shows with the cache's SQL
report, not with numbers written here.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from core import commands as cmd
from sync.client.auth import UserInfo
from sync.client.cache import LocalCache
from sync.protocol import BranchRef, CounterRef, ReferenceData, ServiceRef, StaffRef

ZONE = "Europe/Berlin"
BRANCH = "0193b3c2-0000-7000-8000-00000000b001"
ACCOUNTS = "0193b3c2-0000-7000-8000-00000000a001"
LOANS = "0193b3c2-0000-7000-8000-00000000a002"
COUNTERS = ("0193b3c2-0000-7000-8000-00000000c001", "0193b3c2-0000-7000-8000-00000000c002")
STAFF = ("0193b3c2-0000-7000-8000-00000000d001", "0193b3c2-0000-7000-8000-00000000d002")
REPORTER = [
    "queue.view",
    "tickets.issue",
    "tickets.call",
    "tickets.serve",
    "counters.operate",
    "reports.branch",
]

REFERENCE = ReferenceData(
    version="r1",
    branch=BranchRef(id=BRANCH, name="Riverside", time_zone=ZONE),
    services=[
        ServiceRef(id=ACCOUNTS, code="A", name="Accounts", target_wait_s=600),
        ServiceRef(id=LOANS, code="L", name="Loans", target_wait_s=None),
    ],
    counters=[
        CounterRef(id=COUNTERS[0], name="Counter 1", work_profile=[ACCOUNTS, LOANS]),
        CounterRef(id=COUNTERS[1], name="Counter 2", work_profile=[LOANS, ACCOUNTS]),
    ],
    staff=[
        StaffRef(id=STAFF[0], display_name="Robin Teller"),
        StaffRef(id=STAFF[1], display_name="Sam Clerk"),
    ],
    pause_reasons=["Break", "Lunch"],
    permissions=REPORTER,
)


def user(permissions: list[str], tenant_permissions: list[str] | None = None) -> UserInfo:
    return UserInfo.model_validate(
        {
            "id": STAFF[0],
            "username": "robin",
            "display_name": "Robin Teller",
            "tenant": {"id": str(uuid.uuid4()), "slug": "acme", "name": "Acme"},
            "permissions": sorted(set(permissions) | set(tenant_permissions or [])),
            "branches": [
                {"id": BRANCH, "code": "RIV", "name": "Riverside", "permissions": permissions}
            ],
        }
    )


def open_cache(path: Path) -> LocalCache:
    cache = LocalCache.open(path, BRANCH)
    cache.apply_reference(REFERENCE)
    return cache


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), ZoneInfo(ZONE))


def simulate(cache: LocalCache, days: list[date], per_day: int, seed: int = 7) -> None:
    """``per_day`` tickets on each day between 09:00 and 16:00 branch time."""
    rng = random.Random(seed)
    for day in days:
        _one_day(cache, day, per_day, rng)


def _one_day(cache: LocalCache, day: date, per_day: int, rng: random.Random) -> None:
    def run(command: cmd.Command) -> None:
        cache.execute(command)

    opened = local(day, 8, 55)
    for counter, staff in zip(COUNTERS, STAFF, strict=True):
        run(cmd.OpenCounter(at=opened, counter_id=counter, actor_id=staff))
    free = {c: local(day, 9) for c in COUNTERS}
    arrivals = sorted(
        local(day, 9) + timedelta(seconds=rng.randrange(0, 7 * 3600)) for _ in range(per_day)
    )
    for n, arrived in enumerate(arrivals):
        service = ACCOUNTS if rng.random() < 0.6 else LOANS
        issued = cache.issue_ticket(service, at=arrived)
        ticket = issued.ticket_id
        if rng.random() < 0.08:  # walks away before being called
            run(cmd.Cancel(at=arrived + timedelta(minutes=rng.randrange(2, 20)), ticket_id=ticket))
            continue
        counter = COUNTERS[n % 2]
        staff = STAFF[n % 2]
        at = max(arrived + timedelta(seconds=rng.randrange(30, 1500)), free[counter])
        run(cmd.CallTicket(at=at, counter_id=counter, ticket_id=ticket, actor_id=staff))
        fate = rng.random()
        if fate < 0.1:
            at += timedelta(seconds=90)
            run(cmd.Recall(at=at, ticket_id=ticket, actor_id=staff))
            at += timedelta(seconds=120)
            run(cmd.MarkNoShow(at=at, ticket_id=ticket, actor_id=staff))
        elif fate < 0.2:
            at += timedelta(seconds=60)
            run(cmd.StartService(at=at, ticket_id=ticket, actor_id=staff))
            at += timedelta(seconds=rng.randrange(60, 300))
            other = LOANS if service == ACCOUNTS else ACCOUNTS
            run(cmd.Transfer(at=at, ticket_id=ticket, to_service_id=other, actor_id=staff))
            at += timedelta(seconds=rng.randrange(60, 900))
            run(cmd.CallTicket(at=at, counter_id=counter, ticket_id=ticket, actor_id=staff))
            at = _serve(run, ticket, staff, at, rng)
        elif fate < 0.25:
            at += timedelta(seconds=30)
            run(cmd.Park(at=at, ticket_id=ticket, actor_id=staff))
            at += timedelta(seconds=rng.randrange(60, 600))
            run(cmd.ReturnTicket(at=at, ticket_id=ticket, actor_id=staff))
            at += timedelta(seconds=30)
            run(cmd.CallTicket(at=at, counter_id=counter, ticket_id=ticket, actor_id=staff))
            at = _serve(run, ticket, staff, at, rng)
        else:
            at = _serve(run, ticket, staff, at, rng)
        if rng.random() < 0.1:
            reason = rng.choice(["Break", "Lunch"])
            run(cmd.PauseCounter(at=at, counter_id=counter, reason=reason, actor_id=staff))
            at += timedelta(minutes=rng.randrange(5, 30))
            run(cmd.ResumeCounter(at=at, counter_id=counter, actor_id=staff))
        free[counter] = at
    closed = max([*free.values(), local(day, 17)])
    for counter, staff in zip(COUNTERS, STAFF, strict=True):
        run(cmd.CloseCounter(at=closed, counter_id=counter, actor_id=staff))


def _serve(run, ticket: str, staff: str, at: datetime, rng: random.Random) -> datetime:  # type: ignore[no-untyped-def]
    at += timedelta(seconds=rng.randrange(20, 90))
    run(cmd.StartService(at=at, ticket_id=ticket, actor_id=staff))
    at += timedelta(seconds=rng.randrange(120, 900))
    run(cmd.Complete(at=at, ticket_id=ticket, actor_id=staff))
    return at


def days_before(today: date, count: int) -> Iterator[date]:
    for back in range(count, 0, -1):
        yield today - timedelta(days=back)
