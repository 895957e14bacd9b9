"""The one path by which the service changes a branch's queue.

:func:`execute` decides a command against the authoritative branch state and
stores the events; :func:`append_events` validates events already decided
elsewhere (a console's outbox) and stores each with its verdict;
:func:`issue_ticket` numbers a ticket from the service's own number blocks.
All of them serialise per branch (see :mod:`server.services.queue_state`),
write the ``queue_events`` log and the ``tickets`` projection in the caller's
transaction, and let :class:`core.errors.DomainError` through with nothing
written. :func:`ticket_view` answers "where is my ticket".
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core.commands import Command, IssueTicket
from core.errors import DomainError
from core.events import Customer, EventBase, TicketIssued
from core.machine import apply, decide
from core.state import BranchState, ServiceConfig
from core.values import BusinessDay, Channel, PriorityClass
from server.db import DriverQuery, as_uuid_value
from server.models import (
    Device,
    NumberLease,
    allocate_server_seqs,
    utc_now,
)
from server.models import Ticket as TicketRow
from server.services.queue_append import AppendResult, append_events
from server.services.queue_numbers import next_server_number
from server.services.queue_records import (
    EventRow,
    need_canonical_uuid,
    write_events,
    write_tickets,
)
from server.services.queue_state import (
    BRANCH_STATES,
    BranchInfo,
    BranchLease,
    BranchStates,
    IdLike,
    NotFoundInTenant,
    TicketNotFound,
    as_uuid,
)
from server.services.queue_views import TicketView, view_of

__all__ = [
    "AppendResult",
    "BranchStates",
    "NotFoundInTenant",
    "TicketNotFound",
    "TicketView",
    "append_events",
    "execute",
    "issue_ticket",
    "ticket_view",
]


def execute(
    session: Session,
    *,
    tenant_id: IdLike,
    branch_id: IdLike,
    command: Command,
    actor_user_id: uuid.UUID | None = None,
    device_id: uuid.UUID | None = None,
    states: BranchStates | None = None,
) -> list[EventBase]:
    """Decide ``command`` against the branch and store the events it causes.

    ``actor_user_id`` (the signed-in user) becomes the events' actor. ``device_id``
    names the console that asked; it is kept in the event, not in the log's device
    columns, which belong to pushed events with their ``device_seq``. Unknown or
    foreign service, counter and ticket ids raise :class:`NotFoundInTenant`.
    """
    with (states or BRANCH_STATES).use(session, tenant_id, branch_id, lock=True) as lease:
        if device_id is not None:
            _find_device(session, lease.branch, device_id)
        events = _decide(lease.state, command, actor_user_id, device_id)
        _record(session, lease, events, actor_user_id)
        return events


def issue_ticket(
    session: Session,
    *,
    tenant_id: IdLike,
    branch_id: IdLike,
    service_id: IdLike,
    channel: Channel = Channel.WALK_IN,
    priority: PriorityClass = PriorityClass.NORMAL,
    customer: Customer | None = None,
    appointment_at: datetime | None = None,
    actor_user_id: uuid.UUID | None = None,
    at: datetime | None = None,
    states: BranchStates | None = None,
) -> TicketView:
    """Issue a ticket numbered from the service's own blocks (leased to no device).

    The next number is one past the highest already issued from those blocks on
    that business day; when they are used up a new block is leased with
    :func:`core.numbering.next_block` over every lease of the prefix and day. The
    branch lock makes two concurrent issuers take turns, so numbers never repeat.
    """
    at = at or utc_now()
    with (states or BRANCH_STATES).use(session, tenant_id, branch_id, lock=True) as lease:
        service = _find_service(lease, service_id)
        if service.id in lease.config.inactive:
            raise DomainError(f"{service.name} is not taking tickets")
        day = BusinessDay.of(at, lease.state.time_zone, lease.state.day_starts_at_min).day
        number, new_block = next_server_number(session, lease, service.code, day)
        command = IssueTicket(
            at=at,
            service_id=service.id,
            number=number,
            channel=channel,
            priority=priority,
            appointment_at=appointment_at,
            customer=customer,
        )
        events = _decide(lease.state, command, actor_user_id, None)
        if new_block is not None:
            session.add(
                NumberLease(
                    tenant_id=lease.branch.tenant_id,
                    branch_id=lease.branch.id,
                    prefix=new_block.prefix,
                    business_day=new_block.business_day,
                    first=new_block.first,
                    last=new_block.last,
                    device_id=None,
                )
            )
        _record(session, lease, events, actor_user_id)
        issued = events[0]
        assert isinstance(issued, TicketIssued)
        return view_of(session, lease.state, lease.state.tickets[issued.ticket_id])


def ticket_view(
    session: Session,
    tenant_id: IdLike,
    ticket_id: IdLike,
    *,
    branch_id: IdLike | None = None,
    states: BranchStates | None = None,
) -> TicketView:
    """Where a ticket stands; another tenant's ticket raises :class:`TicketNotFound`.

    ``branch_id``, when the caller already looked it up within the tenant, saves
    looking it up again.
    """
    try:
        tid = as_uuid(ticket_id, "ticket")
    except NotFoundInTenant:
        raise TicketNotFound(f"There is no ticket {ticket_id!r}") from None
    if branch_id is None:
        branch_id = ticket_branch_id(session, as_uuid(tenant_id, "tenant"), tid)
    if branch_id is None:
        raise TicketNotFound(f"There is no ticket {tid}")
    with (states or BRANCH_STATES).use(session, tenant_id, branch_id) as lease:
        ticket = lease.state.tickets.get(str(tid))
        if ticket is None:  # pragma: no cover - the projection is written with the events
            raise TicketNotFound(f"There is no ticket {tid}")
        return view_of(session, lease.state, ticket)


def _decide(
    state: BranchState,
    command: Command,
    actor_user_id: uuid.UUID | None,
    device_id: uuid.UUID | None,
) -> list[EventBase]:
    """``decide``, after checking the command names things of this branch (pure)."""
    for attr, what in (("service_id", "service"), ("to_service_id", "service")):
        value = getattr(command, attr, None)
        if value is not None and value not in state.services:
            raise NotFoundInTenant(f"There is no {what} {value} in this branch")
    counter_id = getattr(command, "counter_id", None)
    if counter_id is not None and counter_id not in state.counters:
        raise NotFoundInTenant(f"There is no counter {counter_id} in this branch")
    ticket_id = getattr(command, "ticket_id", None)
    issuing = isinstance(command, IssueTicket)
    if ticket_id is not None and not issuing and ticket_id not in state.tickets:
        raise TicketNotFound(f"There is no ticket {ticket_id} in this branch")
    if isinstance(command, IssueTicket) and command.ticket_id is not None:
        need_canonical_uuid(command.ticket_id)
    if actor_user_id is not None:
        command = dataclasses.replace(command, actor_id=str(actor_user_id))
    events = decide(state, command)
    if device_id is not None:
        events = [e.model_copy(update={"device_id": str(device_id)}) for e in events]
    return events


def _record(
    session: Session,
    lease: BranchLease,
    events: list[EventBase],
    actor_user_id: uuid.UUID | None,
) -> None:
    """Fold decided events, then store them with the next ``server_seq`` values."""
    lease.mutating = True
    # Fold them all before writing anything: a refusal of the second event of a
    # command (complete = start + done) then leaves the database untouched.
    for event in events:
        apply(lease.state, event)
    seqs = allocate_server_seqs(session, lease.branch.id, len(events))
    rows = [
        EventRow(event, server_seq=seq, actor_user_id=actor_user_id)
        for event, seq in zip(events, seqs, strict=True)
    ]
    tenant_id, branch_id = lease.branch.tenant_id, lease.branch.id
    write_events(session, tenant_id, branch_id, rows)
    write_tickets(session, tenant_id, branch_id, lease.state, events)
    lease.advanced(seqs[-1], events[-1].id)


_TICKETS = TicketRow.__table__.c
_TICKET_BRANCH = DriverQuery(
    select(_TICKETS.branch_id).where(
        _TICKETS.id == bindparam("ticket_id"), _TICKETS.tenant_id == bindparam("tenant_id")
    )
)


def ticket_branch_id(
    session: Session, tenant_id: uuid.UUID, ticket_id: uuid.UUID
) -> uuid.UUID | None:
    """The branch of a ticket of the tenant, or None."""
    params = {"ticket_id": ticket_id, "tenant_id": tenant_id}
    row = _TICKET_BRANCH.first(session.connection(), params)
    return None if row is None else as_uuid_value(row[0])


_DEVICES = Device.__table__.c
_DEVICE = select(_DEVICES.id).where(
    _DEVICES.id == bindparam("device_id"),
    _DEVICES.branch_id == bindparam("branch_id"),
    _DEVICES.tenant_id == bindparam("tenant_id"),
)


def _find_service(lease: BranchLease, service_id: IdLike) -> ServiceConfig:
    """The service of the branch, from the config the lease was checked out with."""
    sid = as_uuid(service_id, "service")
    service = lease.config.service(str(sid))
    if service is None:
        raise NotFoundInTenant(f"There is no service {sid} in branch {lease.branch.name}")
    return service


def _find_device(session: Session, branch: BranchInfo, device_id: uuid.UUID) -> None:
    params = {"device_id": device_id, "branch_id": branch.id, "tenant_id": branch.tenant_id}
    found = session.connection().scalar(_DEVICE, params)
    if found is None:
        raise NotFoundInTenant(f"There is no device {device_id} in branch {branch.name}")
