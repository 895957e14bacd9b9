"""Leasing blocks of ticket numbers to a device (DESIGN "Sync" 5).

A console issues tickets offline from number blocks it leased while online. A
block is the next one :func:`core.numbering.next_block` gives over *every*
lease of the prefix and day (other devices' and the service's own), taken
under the branch lock, so no two blocks ever overlap; the unique
``(branch, prefix, day, first)`` constraint backs that up. A service whose
numbers for the day are all handed out gets no block: the device falls back
to its slot's numbers (:func:`core.numbering.fallback_numbers`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import DomainError
from core.numbering import NumberBlock, next_block
from core.values import BusinessDay, TimeZoneName
from server.models import Device, NumberLease, Service, utc_now
from server.services.queue_state import BranchInfo, NotFoundInTenant, lock_branch
from sync.protocol import LeaseBlock


def branch_today(branch: BranchInfo) -> date:
    """The branch's current business day, in its own zone and day start."""
    zone = TimeZoneName(branch.time_zone)
    return BusinessDay.of(utc_now(), zone, branch.day_starts_at).day


def lease_blocks(
    session: Session,
    *,
    branch: BranchInfo,
    device: Device,
    day: date,
    service_ids: Sequence[uuid.UUID],
    have: dict[str, int],
    min_remaining: int,
) -> list[LeaseBlock]:
    """One new block for each service the device holds fewer than ``min_remaining`` numbers of.

    ``service_ids`` empty means every active service of the branch; a named
    service that is not the branch's raises :class:`NotFoundInTenant`.
    """
    services = _services(session, branch, service_ids)
    lock_branch(session, branch.id)
    leased = []
    for service in services:
        if have.get(str(service.id), 0) >= min_remaining:
            continue
        block = _next_block(session, branch.id, service.code, day)
        if block is None:
            continue
        session.add(
            NumberLease(
                tenant_id=branch.tenant_id,
                branch_id=branch.id,
                prefix=block.prefix,
                business_day=block.business_day,
                first=block.first,
                last=block.last,
                device_id=device.id,
            )
        )
        session.flush()  # the next service of the same prefix must see this block
        leased.append(
            LeaseBlock(
                service_id=str(service.id),
                prefix=block.prefix,
                business_day=day,
                first=block.first,
                last=block.last,
            )
        )
    return leased


def _services(
    session: Session, branch: BranchInfo, service_ids: Sequence[uuid.UUID]
) -> list[Service]:
    of_branch = select(Service).where(Service.branch_id == branch.id)
    if not service_ids:
        return list(
            session.scalars(of_branch.where(Service.active.is_(True)).order_by(Service.code))
        )
    found = {s.id: s for s in session.scalars(of_branch.where(Service.id.in_(service_ids)))}
    missing = [sid for sid in service_ids if sid not in found]
    if missing:
        raise NotFoundInTenant(f"There is no service {missing[0]} in branch {branch.name}")
    # Inactive services take no tickets, so they need no numbers.
    return [found[sid] for sid in dict.fromkeys(service_ids) if found[sid].active]


def _next_block(
    session: Session, branch_id: uuid.UUID, prefix: str, day: date
) -> NumberBlock | None:
    existing = [
        NumberBlock(prefix, day, first, last)
        for first, last in session.execute(
            select(NumberLease.first, NumberLease.last).where(
                NumberLease.branch_id == branch_id,
                NumberLease.prefix == prefix,
                NumberLease.business_day == day,
            )
        )
    ]
    try:
        return next_block(existing, prefix, day)
    except DomainError:  # every number below the fallback zone is handed out
        return None
