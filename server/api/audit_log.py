"""``/audit`` route: one page of the tenant's audit log, newest first, with filters.

Needs ``audit.view`` tenant-wide. Pages are chained by ``next_cursor`` (pass
it back as ``cursor``); it is None on the last page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from server.api.deps import Principal, SessionDep, require
from server.api.params import MAX_SQL_INT, UtcInstant
from server.models import AuditLog
from server.services import audit

router = APIRouter(prefix="/audit", tags=["audit"])

Viewer = Annotated[Principal, Depends(require("audit.view"))]
_Text = Annotated[str | None, Query(max_length=64)]


class AuditEntryOut(BaseModel):
    seq: int
    at: datetime
    actor_type: str
    actor_id: str | None
    source_ip: str | None
    user_agent: str | None
    action: str
    object_type: str | None
    object_id: str | None
    result: str
    reason: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, row: AuditLog) -> AuditEntryOut:
        return cls(
            seq=row.seq,
            at=row.at,
            actor_type=row.actor_type,
            actor_id=row.actor_id,
            source_ip=row.source_ip,
            user_agent=row.user_agent,
            action=row.action,
            object_type=row.object_type,
            object_id=row.object_id,
            result=row.result,
            reason=row.reason,
            details=row.details if isinstance(row.details, dict) else {},
        )


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: int | None


@router.get("", response_model=AuditPage)
def list_audit(
    principal: Viewer,
    session: SessionDep,
    action: _Text = None,
    actor_id: _Text = None,
    object_type: _Text = None,
    object_id: _Text = None,
    result: Literal["success", "failure", "denied"] | None = None,
    since: Annotated[UtcInstant | None, Query(description="inclusive")] = None,
    until: Annotated[UtcInstant | None, Query(description="exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = audit.DEFAULT_PAGE,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_SQL_INT)] = None,
) -> AuditPage:
    """Audit rows matching every filter given, newest first."""
    rows, next_cursor = audit.list_entries(
        session,
        principal.tenant_id,
        action=action,
        actor_id=actor_id,
        object_type=object_type,
        object_id=object_id,
        result=result,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return AuditPage(items=[AuditEntryOut.of(r) for r in rows], next_cursor=next_cursor)
