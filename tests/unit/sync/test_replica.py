"""The in-memory replica: a copied state is equal to and independent of its original."""

from __future__ import annotations

from core.machine import replay
from core.state import TicketStatus
from core.values import Channel, PriorityClass, TransferPosition
from sync.client.replica import clone_state
from tests.unit.core.builders import ACCOUNTS, C1, C2, LOANS, TAX, Desk, new_branch, snapshot


def busy_desk() -> Desk:
    """A branch with every kind of ticket position: called, serving, parked, transferred..."""
    desk = Desk()
    desk.open(C1, C2)
    tickets = [desk.issue(ACCOUNTS) for _ in range(3)]
    desk.issue(LOANS, priority=PriorityClass.URGENT)
    desk.issue(ACCOUNTS, channel=Channel.APPOINTMENT, appointment_at=desk.tick(30))
    desk.call(tickets[0], C1)
    desk.start(tickets[0])
    desk.transfer(tickets[1], TAX, TransferPosition.FRONT)
    served = desk.call_next(C2)
    desk.park(served)
    desk.pause(C2, "lunch")
    return desk


def test_a_clone_equals_its_original_and_replay() -> None:
    desk = busy_desk()
    clone = clone_state(desk.state)
    assert snapshot(clone) == snapshot(desk.state)
    assert snapshot(clone) == snapshot(replay(new_branch(), desk.log))


def test_changing_a_clone_leaves_the_original_alone() -> None:
    desk = busy_desk()
    before = snapshot(desk.state)
    clone = Desk(clone_state(desk.state), now=desk.now)
    parked = next(t for t in clone.state.tickets.values() if t.status is TicketStatus.PARKED)
    clone.return_(parked)
    clone.complete(clone.state.tickets[clone.state.counters[C1].current_ticket_id or ""])
    clone.issue(TAX)
    clone.state.services.pop(TAX)
    assert snapshot(desk.state) == before
    assert snapshot(clone.state) != before
