"""Offline ticket numbers: leases first, then the device's fallback slot, never twice."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import commands as cmd
from core.numbering import FALLBACK_FLOOR, MAX_DEVICE_SLOTS, fallback_numbers
from tests.unit.sync.builders import ACCOUNTS, DAY, LOANS, at, lease, open_cache


def test_leased_numbers_then_fallback_numbers_never_repeat_across_restarts(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, slot=7)
    cache.add_leases([lease(ACCOUNTS, "A", 1, 3), lease(LOANS, "L", 1, 50)])
    assert cache.lease_needs(at(0)) == {ACCOUNTS: 3, LOANS: 50}
    numbers = [cache.issue_ticket(ACCOUNTS, at=at(0)).number for _ in range(2)]
    cache.close()

    cache = open_cache(tmp_path)
    assert cache.lease_needs(at(0))[ACCOUNTS] == 1
    numbers += [cache.issue_ticket(ACCOUNTS, at=at(1)).number for _ in range(3)]
    cache.close()
    cache = open_cache(tmp_path)
    numbers.append(cache.issue_ticket(ACCOUNTS, at=at(2)).number)

    zone = fallback_numbers(7)
    assert numbers == ["A001", "A002", "A003", f"A{zone[0]}", f"A{zone[1]}", f"A{zone[2]}"]
    assert cache.alerts() == []  # leased and slotted numbers are safe: no warning
    assert cache.lease_needs(at(2)) == {ACCOUNTS: 0, LOANS: 50}
    assert cache.lease_needs(at(60 * 24)) == {ACCOUNTS: 0, LOANS: 0}  # another day


def test_a_new_lease_is_used_before_fallback_numbers_and_old_days_are_forgotten(
    tmp_path: Path,
) -> None:
    cache = open_cache(tmp_path, slot=0)
    assert cache.issue_ticket(ACCOUNTS, at=at(0)).number == f"A{FALLBACK_FLOOR}"
    cache.add_leases([lease(ACCOUNTS, "A", 51, 52)])
    cache.add_leases([lease(ACCOUNTS, "A", 51, 52)])  # a retried lease keeps its progress
    assert [cache.issue_ticket(ACCOUNTS, at=at(1)).number for _ in range(3)] == [
        "A051",
        "A052",
        f"A{FALLBACK_FLOOR + MAX_DEVICE_SLOTS}",  # slot 0's second fallback number
    ]
    tomorrow = DAY + timedelta(days=1)
    cache.add_leases([lease(ACCOUNTS, "A", 1, 1, tomorrow)])
    # Numbers restart every business day, and yesterday's blocks are gone.
    assert cache.issue_ticket(ACCOUNTS, at=at(60 * 24)).number == "A001"
    assert cache.issue_ticket(ACCOUNTS, at=at(60 * 24)).number == f"A{FALLBACK_FLOOR}"


def test_without_a_slot_the_console_still_issues_and_warns(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    numbers = [cache.issue_ticket(LOANS, at=at(i)).number for i in range(2)]
    cache.close()
    cache = open_cache(tmp_path)
    numbers.append(cache.issue_ticket(LOANS, at=at(3)).number)

    assert numbers == ["L9999", "L9998", "L9997"]
    alerts = cache.alerts()
    assert [a.ticket_number for a in alerts] == numbers
    assert {a.kind for a in alerts} == {"number_warning"}
    assert "another console may have issued the same number" in alerts[0].reason


def test_a_slot_running_dry_falls_back_to_the_unslotted_numbers(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, slot=49)
    slotted = [cache.issue_ticket(ACCOUNTS, at=at(0)).number for _ in fallback_numbers(49)]
    assert slotted[-1] == "A9999"
    assert cache.issue_ticket(ACCOUNTS, at=at(0)).number == "A9998"
    assert [a.ticket_number for a in cache.alerts()] == ["A9998"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    slots=st.lists(st.integers(0, 49), min_size=2, max_size=2, unique=True),
    counts=st.lists(st.integers(0, 12), min_size=2, max_size=2),
    lease_sizes=st.lists(st.integers(0, 5), min_size=2, max_size=2),
    restart_after=st.integers(0, 12),
)
def test_two_offline_consoles_with_different_slots_never_collide(
    slots: list[int], counts: list[int], lease_sizes: list[int], restart_after: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        issued: list[str] = []
        first = 1
        for device, (slot, count, size) in enumerate(zip(slots, counts, lease_sizes, strict=True)):
            cache = open_cache(Path(directory), f"console{device}", slot=slot)
            if size:  # the service leases disjoint blocks
                cache.add_leases([lease(ACCOUNTS, "A", first, first + size - 1)])
                first += size
            for n in range(count):
                if n == restart_after:
                    cache.close()
                    cache = open_cache(Path(directory), f"console{device}")
                issued.append(cache.issue_ticket(ACCOUNTS, at=at(n)).number)
            assert cache.alerts() == []
            cache.close()
        assert len(issued) == len(set(issued)) == sum(counts)


def test_numbers_seen_in_the_log_are_skipped(tmp_path: Path) -> None:
    from tests.unit.sync.builders import FakeService
    from tests.unit.sync.test_cache_sync import kiosk_issue

    service = FakeService()
    kiosk_issue(service, "A9999", 0)  # e.g. issued by an unslotted console earlier
    cache = open_cache(tmp_path)
    service.pull(cache)
    assert cache.issue_ticket(ACCOUNTS, at=at(1)).number == "A9998"
    cache.execute(cmd.Cancel(at=at(2), ticket_id=cache.waiting(ACCOUNTS)[0].id))
