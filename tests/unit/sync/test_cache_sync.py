"""The sync engine's side of the cache: push verdicts, pulled pages, rebase, convergence."""

from __future__ import annotations

from pathlib import Path

from core import commands as cmd
from core.events import TicketIssued, parse_event
from core.values import TicketNumber
from sync.client.rebase import REFUSED_UNSEEN
from sync.protocol import CounterRef, EventResult, ServiceRef
from tests.unit.sync.builders import (
    ACCOUNTS,
    C1,
    C2,
    LOANS,
    FakeService,
    at,
    lease,
    open_cache,
    page,
    reference,
    view,
)


def kiosk_issue(
    service: FakeService, number: str, minute: float, service_id: str = ACCOUNTS
) -> str:
    """A ticket issued on the service by another client; returns its id."""
    command = cmd.IssueTicket(
        at=at(minute), service_id=service_id, number=TicketNumber.parse(number)
    )
    issued = service.run(command)[0]
    assert isinstance(issued, TicketIssued)
    return issued.ticket_id


def test_pending_events_are_rebased_on_others_confirmed_events(tmp_path: Path) -> None:
    service = FakeService()
    cache = open_cache(tmp_path)
    cache.add_leases([lease(ACCOUNTS, "A", 1, 10)])
    service.pull(cache)
    mine = cache.issue_ticket(ACCOUNTS, at=at(5))  # offline: stays pending
    kiosk = kiosk_issue(service, "A100", 1)  # meanwhile, the service took others' tickets
    kiosk_issue(service, "L100", 2, LOANS)

    applied = service.pull(cache)

    assert (applied.stored, applied.rebased, applied.rejections) == (2, True, [])
    assert [t.id for t in cache.waiting(ACCOUNTS)] == [kiosk, mine.ticket_id]
    assert cache.outbox_size() == 1
    assert cache.cursor() == 2
    assert view(cache, mine.ticket_id).unsynced
    assert not view(cache, kiosk).unsynced

    assert service.push(cache) == []
    assert cache.outbox_size() == 0
    assert not view(cache, mine.ticket_id).unsynced
    applied = service.pull(cache)
    assert (applied.confirmed_own, applied.rebased) == (1, False)

    fresh = open_cache(tmp_path, "fresh")
    service.pull(fresh)
    assert fresh.projection_hash() == cache.projection_hash()


def test_own_events_coming_back_in_order_need_no_rebase(tmp_path: Path) -> None:
    service = FakeService()
    cache = open_cache(tmp_path, slot=1)
    cache.execute(cmd.OpenCounter(at=at(0), counter_id=C1))
    cache.issue_ticket(ACCOUNTS, at=at(1))
    service.push(cache, limit=1)  # the first accepted, the second still pending
    kiosk_issue(service, "A200", 2)

    applied = service.pull(cache)

    # Our event came back first, then the kiosk's: the pending issue must go on top.
    assert (applied.confirmed_own, applied.rebased) == (1, True)
    service.sync(cache)
    applied = service.pull(cache)
    assert (applied.stored, applied.rebased, cache.outbox_size()) == (0, False, 0)


def test_a_rejected_push_is_undone_and_reported(tmp_path: Path) -> None:
    service = FakeService()
    ticket = kiosk_issue(service, "A001", 0)
    mine, theirs = open_cache(tmp_path, "mine"), open_cache(tmp_path, "theirs")
    for cache, counter in ((mine, C1), (theirs, C2)):
        service.pull(cache)
        cache.execute(cmd.OpenCounter(at=at(1), counter_id=counter))
        cache.execute(cmd.CallTicket(at=at(2), counter_id=counter, ticket_id=ticket))
    assert service.sync(theirs) == []  # first commit wins

    rejections = service.push(mine)

    assert len(rejections) == 1
    rejection = rejections[0]
    assert (rejection.ticket_number, rejection.source) == ("A001", "service")
    assert rejection.description == "Call A001 to Counter 1"
    assert rejection.reason == "A001 was already called at Counter 2; it cannot be called"
    assert (view(mine, ticket).status, view(mine, ticket).counter_id) == ("waiting", None)
    counter_one = next(c for c in mine.counters() if c.id == C1)
    # Counter 1 stays open (that event was taken) and is free again.
    assert (counter_one.status, counter_one.current_ticket_id) == ("open", None)
    assert [(a.kind, a.description) for a in mine.alerts()] == [
        ("rejected", "Call A001 to Counter 1")
    ]
    mine.acknowledge_alerts([a.id for a in mine.alerts()])
    assert mine.alerts() == []
    assert len(mine.alerts(include_acknowledged=True)) == 1

    service.sync(mine)
    assert view(mine, ticket).counter_id == C2
    assert mine.projection_hash() != theirs.projection_hash()  # Counter 1 opened since
    service.pull(theirs)
    assert mine.projection_hash() == theirs.projection_hash()


def test_a_pending_event_that_no_longer_applies_is_dropped_on_rebase(tmp_path: Path) -> None:
    service = FakeService()
    ticket = kiosk_issue(service, "A001", 0)
    mine, theirs = open_cache(tmp_path, "mine"), open_cache(tmp_path, "theirs")
    for cache, counter in ((mine, C1), (theirs, C2)):
        service.pull(cache)
        cache.execute(cmd.OpenCounter(at=at(1), counter_id=counter))
        cache.execute(cmd.CallTicket(at=at(2), counter_id=counter, ticket_id=ticket))
    mine.execute(cmd.StartService(at=at(3), ticket_id=ticket))  # depends on the call
    service.sync(theirs)

    applied = service.pull(mine)  # not pushed yet: the rebase finds the conflict

    assert applied.rebased
    assert [(r.description, r.source) for r in applied.rejections] == [
        ("Call A001 to Counter 1", "rebase"),
        ("Start serving A001", "rebase"),
    ]
    assert (
        applied.rejections[0].reason == "A001 was already called at Counter 2; it cannot be called"
    )
    now = view(mine, ticket)
    assert (now.status, now.counter_id) == ("called", C2)
    # Voided events are still pushed (the service wants contiguous device_seq) ...
    assert [e["device_seq"] for e in mine.pending()] == [1, 2, 3]
    # ... and their second refusal, by the service, is not reported again.
    assert service.push(mine) == []
    service.sync(mine)
    service.pull(theirs)
    assert mine.outbox_size() == 0
    assert len(mine.alerts()) == 2
    assert mine.projection_hash() == theirs.projection_hash()


def test_a_refused_issue_takes_its_dependent_pending_events_with_it(tmp_path: Path) -> None:
    service = FakeService()
    cache = open_cache(tmp_path)  # no lease, no slot: numbers from the top of the zone
    issued = cache.issue_ticket(ACCOUNTS, at=at(1))
    assert issued.number == "A9999"
    assert [a.kind for a in cache.alerts()] == ["number_warning"]
    cache.execute(cmd.Cancel(at=at(2), ticket_id=issued.ticket_id))
    kiosk_issue(service, "A9999", 0)  # the clash the warning was about

    rejections = service.push(cache, limit=1)

    assert [(r.description, r.source) for r in rejections] == [
        ("Issue A9999 for Accounts", "service"),
        ("Cancel A9999", "rebase"),
    ]
    assert rejections[0].reason == "A9999 has already been issued on 2024-03-01"
    assert cache.ticket(issued.ticket_id) is None
    service.sync(cache)
    assert cache.outbox_size() == 0


def test_a_push_whose_verdict_was_lost_is_settled_by_the_pull(tmp_path: Path) -> None:
    service = FakeService()
    ticket = kiosk_issue(service, "A001", 0)
    cache = open_cache(tmp_path)
    service.pull(cache)
    cache.execute(cmd.OpenCounter(at=at(1), counter_id=C1))
    cache.execute(cmd.CallTicket(at=at(2), counter_id=C1, ticket_id=ticket))
    service.run(cmd.Cancel(at=at(1.5), ticket_id=ticket))  # the customer left meanwhile
    saved = cache.apply_push_results
    cache.apply_push_results = lambda results: []  # type: ignore[method-assign]
    service.push(cache)  # the service decides, the answer never arrives
    cache.apply_push_results = saved  # type: ignore[method-assign]

    applied = service.pull(cache)

    assert [(r.description, r.reason) for r in applied.rejections] == [
        ("Call A001 to Counter 1", REFUSED_UNSEEN)
    ]
    assert cache.outbox_size() == 0
    assert applied.confirmed_own == 2
    assert view(cache, ticket).status == "cancelled"
    assert next(c for c in cache.counters() if c.id == C1).status == "open"


def test_duplicate_verdicts_count_like_the_first(tmp_path: Path) -> None:
    service = FakeService()
    cache = open_cache(tmp_path)
    opened = cache.execute(cmd.OpenCounter(at=at(0), counter_id=C1))[0]
    duplicate = EventResult(event_id=opened.id, status="duplicate", server_seq=7)
    assert cache.apply_push_results([duplicate]) == []
    assert cache.outbox_size() == 0
    unknown = EventResult(event_id=opened.id, status="rejected", reason="late")
    applied = cache.apply_pull(page([(7, opened)], last_device_seq=1))
    assert cache.apply_push_results([unknown]) == []  # already confirmed: nothing to undo
    assert (applied.confirmed_own, cache.cursor()) == (1, 7)
    assert service.log == []


def test_caches_that_received_the_same_events_hash_alike(tmp_path: Path) -> None:
    service = FakeService()
    writers = [open_cache(tmp_path, f"w{i}", slot=i) for i in range(2)]
    for i, cache in enumerate(writers):
        counter = (C1, C2)[i]
        cache.execute(cmd.OpenCounter(at=at(0), counter_id=counter))
        for minute in range(3):
            cache.issue_ticket((ACCOUNTS, LOANS)[i], at=at(minute + 1))
        cache.execute(cmd.CallNext(at=at(5), counter_id=counter))
    for cache in writers:
        service.sync(cache)
    for cache in writers:
        service.sync(cache)
    reader = open_cache(tmp_path, "reader")
    service.pull(reader)

    hashes = {c.projection_hash() for c in (*writers, reader)}
    assert len(hashes) == 1
    reader.execute(cmd.Recall(at=at(6), ticket_id=reader.counters()[1].current_ticket_id or ""))
    assert reader.projection_hash() not in hashes


def test_a_large_page_is_applied_in_one_go(tmp_path: Path) -> None:
    service = FakeService()
    for n in range(1, 2501):
        ticket = kiosk_issue(service, f"L{n}", n / 100, LOANS)
        service.run(cmd.Cancel(at=at(n / 100), ticket_id=ticket))
    cache = open_cache(tmp_path)
    cache.execute(cmd.OpenCounter(at=at(0), counter_id=C1))

    applied = service.pull(cache)

    assert (applied.stored, applied.cursor, applied.has_more) == (5000, 5000, False)
    assert applied.rebased
    assert cache.ticket_by_number("L2500", at(0).date()) is not None
    fresh = open_cache(tmp_path, "fresh")
    service.pull(fresh)
    cache.close()
    assert open_cache(tmp_path).repaired is False


def test_reference_data_from_a_pull_updates_counters_and_services(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    base = reference()
    newer = reference(
        version="v2",
        slot=4,
        counters=[*base.counters, CounterRef(id="ctr-3", name="Counter 3", work_profile=[LOANS])],
    )
    applied = cache.apply_pull(page([], ref=newer))
    assert applied.reference_changed
    assert cache.reference_version() == "v2"
    assert [c.name for c in cache.counters()] == ["Counter 1", "Counter 2", "Counter 3"]
    assert cache.slot == 4
    cache.execute(cmd.OpenCounter(at=at(0), counter_id="ctr-3"))
    assert not cache.apply_pull(page([], ref=newer)).reference_changed


def test_events_naming_unknown_services_are_folded_once_the_reference_knows_them(
    tmp_path: Path,
) -> None:
    newer = reference(
        version="v2",
        services=[*reference().services, ServiceRef(id="svc-tax", code="TX", name="Tax")],
    )
    service = FakeService(ref=newer)
    tax = kiosk_issue(service, "TX001", 0, "svc-tax")
    cache = open_cache(tmp_path)  # still on v1, which has no Tax service
    applied = cache.apply_pull(page([(1, parse_event(service.log[0].event))]))
    assert applied.stored == 1
    assert cache.ticket(tax) is None  # it cannot fold yet, and is not lost either

    applied = cache.apply_pull(page([], cursor=1, ref=newer))

    assert applied.reference_changed
    assert view(cache, tax).number == "TX001"
    assert cache.cursor() == 1
