"""Shared checks of the sync routes: the branch, the permission, the device.

Every sync call is about one branch of the caller's tenant (another tenant's
branch is 404 before any talk of permissions) and needs ``sync.device`` there.
Then the device: a token issued for a device that has since been revoked no
longer authenticates (401); a named device is found or registered
(:mod:`server.services.sync_devices`), and refused as 404 (another tenant's),
409 (another branch's) or 403 (revoked).

Reads (pull, stream) may leave the device out: a dashboard without an outbox
reads the log as well; it then has no ``last_device_seq`` and no slot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.orm import Session

from server.api.deps import Principal, PrincipalDep, SessionDep, unauthenticated
from server.api.problems import Problem
from server.api.queue_support import authorize, not_found_is_404
from server.models import Device
from server.services import sync_devices
from server.services.queue_state import BranchInfo, find_branch
from sync.protocol import DEVICE_HEADER

PERMISSION = "sync.device"


@dataclass(frozen=True, slots=True)
class SyncCall:
    """An authorised sync call: who, at which branch, from which device (if named)."""

    principal: Principal
    branch: BranchInfo
    device: Device | None


def open_sync_call(
    request: Request,
    session: Session,
    principal: Principal,
    branch_id: uuid.UUID,
    device_id: uuid.UUID | None,
) -> SyncCall:
    """Check the token's device, the branch, the permission and the named device, in that order."""
    token_device = principal.device_id
    if token_device is not None and sync_devices.is_revoked(
        session, principal.tenant_id, token_device
    ):
        raise unauthenticated()
    with not_found_is_404():
        branch = find_branch(session, principal.tenant_id, branch_id)
    authorize(request, session, principal, PERMISSION, branch.id)
    device = None
    if device_id is not None:
        device = _device(request, session, principal, branch, device_id)
    return SyncCall(principal, branch, device)


def _device(
    request: Request,
    session: Session,
    principal: Principal,
    branch: BranchInfo,
    device_id: uuid.UUID,
) -> Device:
    actor = principal.actor(request)
    try:
        with not_found_is_404():
            return sync_devices.sync_device(
                session, principal.tenant_id, branch, device_id, actor=actor
            )
    except sync_devices.DeviceOfAnotherBranch as exc:
        raise Problem(409, str(exc), slug="device-of-another-branch") from None
    except sync_devices.DeviceRevoked as exc:
        raise Problem(403, str(exc), slug="device-revoked") from None


def named_device(
    device_id: Annotated[
        uuid.UUID | None,
        Query(description=f"The calling device; or send the {DEVICE_HEADER} header"),
    ] = None,
    device_header: Annotated[
        uuid.UUID | None,
        Header(alias=DEVICE_HEADER, description="The calling device (its UUID)"),
    ] = None,
) -> uuid.UUID | None:
    """The device named by the query or the header; both must agree when both are sent."""
    if device_id is not None and device_header is not None and device_id != device_header:
        raise Problem(
            422,
            f"device_id {device_id} and the {DEVICE_HEADER} header {device_header} "
            "name different devices",
            slug="validation",
            errors=[{"field": "device_id", "message": "differs from the device header"}],
        )
    return device_id or device_header


def reader_call(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    branch_id: Annotated[uuid.UUID, Query(description="The branch whose log is read")],
    device_id: Annotated[uuid.UUID | None, Depends(named_device)],
) -> SyncCall:
    """The checked call of a reader (pull, stream): the branch and device come in the query."""
    return open_sync_call(request, session, principal, branch_id, device_id)


ReaderCall = Annotated[SyncCall, Depends(reader_call)]
