"""The device a sync call comes from: found, registered on first use, or refused.

Every sync call names its device (a console's own UUID). A device the service
has never seen is registered for the caller's tenant at the branch the call is
about, so installing a console needs no separate registration step; it also
gets a fallback-number ``slot`` (:mod:`core.numbering`), the lowest one free at
the branch, or none when all are taken. A device is bound to its branch: using
it for another branch is a conflict, not a silent move, because its
``device_seq`` history and number leases belong to the first one.

Registration and slot assignment take the branch lock (:func:`lock_branch`),
so two consoles starting at once never get the same slot; a plain read of a
known device takes no lock.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.numbering import MAX_DEVICE_SLOTS
from server.models import Device, utc_now
from server.services import audit
from server.services.errors import Conflict, NotFound
from server.services.queue_state import BranchInfo, lock_branch

# last_seen_at is for people looking at a device list; a write per pull would not help them.
LAST_SEEN_PRECISION: Final = timedelta(minutes=1)


class DeviceNotFound(NotFound):
    """The device id belongs to another tenant (said as "not found", like any foreign id)."""


class DeviceOfAnotherBranch(Conflict):
    """The device is registered at another branch of the tenant."""


class DeviceRevoked(Exception):  # noqa: N818 - reads as a fact, like NotFound
    """The device was revoked by an administrator."""


def sync_device(
    session: Session,
    tenant_id: uuid.UUID,
    branch: BranchInfo,
    device_id: uuid.UUID,
    *,
    actor: audit.Actor,
) -> Device:
    """The device ``device_id`` of ``branch``, registered now if unknown, with a slot if free."""
    device = _check(session.get(Device, device_id), tenant_id, branch, device_id)
    if device is None or device.slot is None:
        lock_branch(session, branch.id)  # then re-read: someone may have just registered it
        device = _check(
            session.get(Device, device_id, populate_existing=True), tenant_id, branch, device_id
        )
        if device is None:
            device = _register(session, branch, device_id, actor)
        elif device.slot is None:
            device.slot = free_slot(session, branch.id)
    now = utc_now()
    if device.last_seen_at is None or now - device.last_seen_at >= LAST_SEEN_PRECISION:
        device.last_seen_at = now
    return device


def is_revoked(session: Session, tenant_id: uuid.UUID, device_id: uuid.UUID) -> bool:
    """Whether the device a token was issued for has been revoked (or is gone)."""
    revoked_at = session.execute(
        select(Device.revoked_at).where(Device.id == device_id, Device.tenant_id == tenant_id)
    ).first()
    return revoked_at is None or revoked_at[0] is not None


def free_slot(session: Session, branch_id: uuid.UUID) -> int | None:
    """The lowest fallback slot no device of the branch holds (caller holds the branch lock)."""
    taken = set(
        session.scalars(
            select(Device.slot).where(Device.branch_id == branch_id, Device.slot.is_not(None))
        )
    )
    return next((slot for slot in range(MAX_DEVICE_SLOTS) if slot not in taken), None)


def _check(
    device: Device | None, tenant_id: uuid.UUID, branch: BranchInfo, device_id: uuid.UUID
) -> Device | None:
    if device is None:
        return None
    if device.tenant_id != tenant_id:
        raise DeviceNotFound(f"There is no device {device_id}")
    if device.branch_id != branch.id:
        raise DeviceOfAnotherBranch(
            f"Device {device_id} is registered at another branch, not at {branch.name}; "
            "a device syncs with one branch only"
        )
    if device.revoked_at is not None:
        raise DeviceRevoked(
            f"This device has been revoked (on {device.revoked_at:%Y-%m-%d}); "
            "ask an administrator to register it again"
        )
    return device


def _register(
    session: Session, branch: BranchInfo, device_id: uuid.UUID, actor: audit.Actor
) -> Device:
    device = Device(
        id=device_id,
        tenant_id=branch.tenant_id,
        branch_id=branch.id,
        name=f"Console {str(device_id)[:8]}",
        kind="console",
        slot=free_slot(session, branch.id),
    )
    session.add(device)
    session.flush()
    audit.record_as(
        session,
        actor,
        tenant_id=branch.tenant_id,
        action="device.register",
        object_type="device",
        object_id=str(device_id),
        details={"branch_id": branch.id, "slot": device.slot, "on": "first sync"},
    )
    return device
