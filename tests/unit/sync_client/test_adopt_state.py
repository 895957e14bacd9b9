"""A new cache starting from the service's branch state ends where folding the log does."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import MalformedEvent
from sync.client import base
from sync.client.cache import LocalCache
from sync.client.outbox import unfolded_ids
from sync.protocol import PullResponse
from tests.unit.sync.builders import ACCOUNTS, BRANCH, FakeService, at, open_cache
from tests.unit.sync_client.test_bulk_pull import (
    ACTIONS,
    FACTS,
    assert_converged,
    expected_facts,
    pull_all,
    rows,
    run,
)

BUSY = (
    [("open", 0), ("open", 1)]
    + [("issue", n) for n in range(12)]
    + [
        ("call_next", 0),
        ("start", 0),
        ("complete", 0),
        ("call_next", 1),
        ("no_show", 1),
        ("call_next", 0),
        ("park", 0),
        ("transfer", 3),
    ]
)


def adopting(service: FakeService, target: LocalCache, limit: int) -> None:
    """A new device's first pull, as the sync engine makes it: state asked with page one."""
    page = service.pull(target, limit, state=target.wants_state())
    while page.has_more:
        page = service.pull(target, limit)


def folded(tmp: Path, service: FakeService) -> LocalCache:
    single = open_cache(tmp, "single")
    pull_all(service, single, 1)
    return single


def flushed(cache: LocalCache) -> LocalCache:
    cache.flush_facts()
    return cache


def busy_and_new(tmp: Path) -> tuple[FakeService, LocalCache]:
    """A service with a busy log, and a new cache of its branch."""
    service = FakeService()
    run(service, BUSY)
    return service, open_cache(tmp, "new")


def assert_as_folded(tmp: Path, service: FakeService, cache: LocalCache) -> None:
    """``cache`` ends where a cache that folded the service's log one event at a time does."""
    assert_converged(flushed(cache), flushed(folded(tmp, service)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS, page_size=st.integers(1, 7))
def test_adopting_the_state_gives_the_cache_folding_the_log_gives(
    actions: list[tuple[str, int]], page_size: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(base, "SNAPSHOT_EVERY", 5)
        service = FakeService()
        run(service, BUSY[:3] + actions)
        new = open_cache(Path(tmp), "new")
        assert new.wants_state()

        adopting(service, new, page_size)

        single = folded(Path(tmp), service)
        assert not new.wants_state()
        assert new.snapshot_used == (len(service.log) > page_size)  # one page: nothing to adopt
        assert rows(new, "SELECT count(*) FROM events") == [(len(service.log),)]
        assert_converged(flushed(new), flushed(single))
        assert rows(new, FACTS) == expected_facts(service)
        new.close()
        reopened = LocalCache.open(new.path, BRANCH)
        assert reopened.snapshot_used
        assert_converged(reopened, single)
        reopened.close()
        single.close()


def test_pages_before_the_state_are_stored_unfolded_and_shown_once_it_is_reached(
    tmp_path: Path,
) -> None:
    service, new = busy_and_new(tmp_path)

    first = service.pull(new, 4, state=True)

    assert (first.stored, first.has_more) == (4, True)
    assert rows(new, "SELECT count(*) FROM events") == [(4,)]
    assert rows(new) == []  # the console shows nothing half-folded
    assert new._replica.base.applied == 0
    pull_all(service, new, 4)
    assert new.snapshot_used
    assert new._replica.base == service.state
    assert_as_folded(tmp_path, service, new)


def test_events_after_the_state_are_folded_on_top_of_it(tmp_path: Path) -> None:
    service = FakeService()
    run(service, BUSY[:8])
    new = open_cache(tmp_path, "new")
    service.pull(new, 3, state=True)  # the state is of the head: 8 events
    run(service, BUSY[8:])  # more arrive before the device reaches it

    pull_all(service, new, 3)

    assert new.snapshot_used
    assert new._replica.base == service.state
    assert_as_folded(tmp_path, service, new)


def test_a_reload_during_an_adoption_folds_what_was_stored_and_shows_it(
    tmp_path: Path,
) -> None:
    service, new = busy_and_new(tmp_path)
    service.pull(new, 6, state=True)
    other = LocalCache.open(new.path, BRANCH)  # another writer of the file: new must reload
    other.mark_synced(at(1))
    other.close()

    new.mark_synced(at(2))  # a write: catches up with the file first

    assert new._adopting is None
    shown = {r[0] for r in rows(new)}
    assert shown  # the stored events, folded and shown
    assert shown == set(new._replica.live.tickets)
    pull_all(service, new, 6)
    assert new._replica.base == service.state
    assert_as_folded(tmp_path, service, new)


def test_a_crash_during_an_adoption_leaves_a_file_that_opens_and_catches_up(
    tmp_path: Path,
) -> None:
    service, new = busy_and_new(tmp_path)
    service.pull(new, 5, state=True)
    # The process dies here: nothing of the adoption is in the file but the events.
    new._engine.dispose()

    reopened = LocalCache.open(new.path, BRANCH)

    assert reopened.repaired  # the projection did not show the stored events yet
    assert not reopened.wants_state()
    pull_all(service, reopened, 5)
    assert_converged(flushed(reopened), flushed(folded(tmp_path, service)))


def test_a_command_during_an_adoption_gives_it_up_and_the_command_is_rebased(
    tmp_path: Path,
) -> None:
    service, new = busy_and_new(tmp_path)
    service.pull(new, 5, state=True)

    issued = new.issue_ticket(ACCOUNTS, at=at(300))
    service.pull(new, 5)

    assert new._adopting is None
    assert issued.ticket_id in new._replica.live.tickets
    service.sync(new)
    assert new.outbox_size() == 0
    assert issued.ticket_id in new._replica.base.tickets
    assert_as_folded(tmp_path, service, new)


def test_a_state_that_does_not_match_the_stored_log_is_replayed_instead(
    tmp_path: Path,
) -> None:
    service, new = busy_and_new(tmp_path)
    wrong = service.state_body().model_copy(update={"events": len(service.log) - 1})
    page = service.log[:4]
    new.apply_pull(
        PullResponse(
            events=page,
            cursor=4,
            has_more=True,
            last_device_seq=0,
            state=wrong,
        )
    )

    pull_all(service, new, 4)

    assert not new.snapshot_used
    assert new._replica.base == service.state
    assert_as_folded(tmp_path, service, new)


def test_a_state_in_another_format_is_not_adopted(tmp_path: Path) -> None:
    service, new = busy_and_new(tmp_path)
    other = service.state_body().model_copy(update={"format": 999, "body": "not ours"})
    new.apply_pull(
        PullResponse(
            events=service.log[:4], cursor=4, has_more=True, last_device_seq=0, state=other
        )
    )

    assert new._adopting is None
    assert new._replica.base.applied == 4  # folded as usual
    pull_all(service, new, 4)
    assert_as_folded(tmp_path, service, new)


def test_a_malformed_event_during_an_adoption_is_refused_as_when_folding(
    tmp_path: Path,
) -> None:
    service, new = busy_and_new(tmp_path)
    service.pull(new, 4, state=True)
    broken = service.log[4].model_copy(update={"event": {**service.log[4].event, "id": "42"}})

    with pytest.raises(MalformedEvent):
        new.apply_pull(
            PullResponse(
                events=[broken, *service.log[5:8]], cursor=8, has_more=True, last_device_seq=0
            )
        )

    assert new.cursor() == 4
    assert rows(new, "SELECT count(*) FROM events") == [(4,)]
    new.mark_synced(at(2))  # the next write reloads: the 4 events are folded
    assert {r[0] for r in rows(new)} == set(new._replica.live.tickets)  # and shown
    pull_all(service, new, 4)
    assert_as_folded(tmp_path, service, new)


def test_an_unfolded_event_is_stored_under_its_ids() -> None:
    service = FakeService()
    run(service, BUSY[:3])
    counter_opened, issued = service.log[0].event, service.log[2].event

    assert unfolded_ids(counter_opened) == (counter_opened["id"], None)
    assert unfolded_ids(issued) == (issued["id"], issued["ticket_id"])
    for bad in (
        {**issued, "type": "ticket.vanished"},
        {**issued, "id": issued["id"].upper()},
        {**issued, "id": 7},
        {**issued, "ticket_id": "A001"},
        {"id": issued["id"]},
    ):
        with pytest.raises(ValueError, match="not"):
            unfolded_ids(bad)


def test_a_cache_with_its_own_events_or_a_cursor_does_not_ask_for_the_state(
    tmp_path: Path,
) -> None:
    service = FakeService()
    run(service, BUSY[:3])
    with_command = open_cache(tmp_path, "own")
    with_command.issue_ticket(ACCOUNTS, at=at(10))
    pulled = open_cache(tmp_path, "pulled")
    service.pull(pulled, 2)

    assert not with_command.wants_state()
    assert not pulled.wants_state()
