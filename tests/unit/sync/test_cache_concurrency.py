"""One cache shared by the UI and sync threads; two instances on one file stay in step."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core import commands as cmd
from core.errors import DomainError
from core.events import TicketIssued
from core.ids import uuid7
from sync.client.cache import LocalCache
from tests.unit.sync.builders import ACCOUNTS, BRANCH, C1, C2, DAY, LOANS, at, open_cache, page


def test_a_second_instance_on_the_same_file_catches_up_before_writing(tmp_path: Path) -> None:
    first = open_cache(tmp_path)
    second = LocalCache.open(first.path, BRANCH)
    first.execute(cmd.OpenCounter(at=at(0), counter_id=C1))

    with pytest.raises(DomainError, match="Counter 1 is already open"):
        second.execute(cmd.OpenCounter(at=at(1), counter_id=C1))
    opened = second.execute(cmd.OpenCounter(at=at(1), counter_id=C2))

    assert opened[0].device_seq == 2
    assert first.issue_ticket(ACCOUNTS, at=at(2)).device_seq == 3
    assert [e["device_seq"] for e in second.pending()] == [1, 2, 3]


def test_commands_and_pulls_from_two_threads_interleave_safely(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, slot=2)
    errors: list[BaseException] = []

    def console() -> None:
        try:
            for minute in range(40):
                cache.issue_ticket(ACCOUNTS, at=at(minute))
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    thread = threading.Thread(target=console)
    thread.start()
    for seq in range(1, 41):  # meanwhile the sync thread folds others' tickets
        kiosk = TicketIssued(
            id=uuid7(),
            branch_id=BRANCH,
            occurred_at=at(seq),
            ticket_id=str(uuid7()),
            service_id=LOANS,
            number=f"L{seq}",
            business_day=DAY,
        )
        cache.apply_pull(page([(seq, kiosk)]))
    thread.join()

    assert errors == []
    assert [e["device_seq"] for e in cache.pending(100)] == list(range(1, 41))
    assert len(cache.waiting(ACCOUNTS)) == 40
    assert len(cache.waiting(LOANS)) == 40
    cache.close()
    assert open_cache(tmp_path).repaired is False
