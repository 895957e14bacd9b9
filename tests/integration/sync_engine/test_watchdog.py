"""The outbox watchdog's rules on an explicit clock: when to alert, when to stand down."""

from __future__ import annotations

import pytest

from sync.client.connectivity import OutboxWatchdog, SyncStats


def test_a_backlog_without_progress_while_online_alerts_once_then_recovers() -> None:
    stats = SyncStats()
    dog = OutboxWatchdog(10.0, stats)

    assert dog.observe(0.0, online=True, pending=3) is None  # the wait starts
    assert dog.observe(9.0, online=True, pending=3) is None
    stuck = dog.observe(10.0, online=True, pending=3)
    assert stuck is not None
    assert stuck.kind == "outbox_stuck"
    assert "3 change(s)" in stuck.message
    assert dog.observe(30.0, online=True, pending=3) is None  # once only
    recovered = dog.progress(31.0, pending=1)

    assert recovered is not None
    assert recovered.kind == "outbox_draining"
    assert stats.stuck_alerts == 1
    assert stats.longest_stuck_s == pytest.approx(31.0)
    assert dog.observe(35.0, online=True, pending=1) is None  # waiting again since 31
    assert dog.observe(41.0, online=True, pending=1) is not None


def test_being_offline_or_empty_is_not_being_stuck() -> None:
    stats = SyncStats()
    dog = OutboxWatchdog(10.0, stats)

    assert dog.observe(0.0, online=False, pending=5) is None
    assert dog.observe(100.0, online=False, pending=5) is None
    assert dog.observe(101.0, online=True, pending=0) is None
    assert dog.observe(200.0, online=True, pending=0) is None
    assert dog.observe(201.0, online=True, pending=2) is None
    assert dog.observe(205.0, online=False, pending=2) is None  # offline ends the wait quietly
    assert dog.observe(206.0, online=True, pending=2) is None
    assert dog.observe(215.0, online=True, pending=2) is None
    assert stats.stuck_alerts == 0
    assert stats.longest_stuck_s == pytest.approx(9.0)


def test_an_alerted_backlog_that_empties_stands_down() -> None:
    dog = OutboxWatchdog(1.0, SyncStats())
    dog.observe(0.0, online=True, pending=1)
    assert dog.observe(2.0, online=True, pending=1) is not None

    drained = dog.observe(3.0, online=True, pending=0)

    assert drained is not None
    assert drained.kind == "outbox_draining"
    assert not dog.alerted
