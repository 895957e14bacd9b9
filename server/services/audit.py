"""Writing, verifying and listing the tamper-evident audit log.

:func:`record` appends one row to the tenant's hash chain (see
:mod:`server.security.audit_chain`) inside the caller's transaction, so the
audit row commits or rolls back together with the change it describes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Generator, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.orm import Session

from core.errors import InvalidValue
from server.db import DriverQuery
from server.models import AuditLog, Tenant, utc_now
from server.security._clock import require_aware
from server.security.audit_chain import (
    GENESIS_HASH,
    AuditRecord,
    ChainReport,
    StoredAuditRow,
    chain_row,
    sanitize_text,
    verify_chain,
)

ACTOR_TYPES: Final = frozenset({"user", "api_key", "device", "system"})
RESULTS: Final = frozenset({"success", "failure", "denied"})
REDACTED: Final = "[redacted]"
# A details key containing one of these (case-insensitive, "-" read as "_")
# names a secret: its value never reaches the log, whatever the caller passed.
SECRET_KEY_MARKERS: Final = ("password", "token", "secret", "authorization", "api_key", "apikey")
DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 500
_DETAIL_TEXT_MAX: Final = 500
# Mixed into the advisory lock key so audit locks cannot collide with locks
# other parts of the service take on the same tenant id.
_LOCK_NAMESPACE: Final = b"queuedesk.audit_log\x00"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, as the audit log names them; service functions take one."""

    type: str = "system"
    id: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None


SYSTEM: Final = Actor()


@dataclass(frozen=True, slots=True)
class Recorded:
    """The row :func:`record` appended: its id, its place in the chain and its hash."""

    id: int
    seq: int
    row_hash: str


def _lock_key(tenant_id: uuid.UUID) -> int:
    digest = hashlib.sha256(_LOCK_NAMESPACE + tenant_id.bytes).digest()
    return int.from_bytes(digest[:8], "big", signed=True)  # pg advisory keys are bigint


def _lock_tenant_chain(session: Session, tenant_id: uuid.UUID) -> None:
    # SQLite needs nothing: server.db begins every write transaction with
    # BEGIN IMMEDIATE, which already serialises writers of the whole database.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(tenant_id)})


def _is_secret_key(key: str) -> bool:
    folded = key.casefold().replace("-", "_")
    return any(marker in folded for marker in SECRET_KEY_MARKERS)


def _clean_details(value: Any) -> Any:
    """JSON data with secrets redacted and strings made safe for one log line."""
    if isinstance(value, Mapping):
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            name = sanitize_text(str(key), 100)
            cleaned[name] = REDACTED if _is_secret_key(str(key)) else _clean_details(item)
        return cleaned
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_clean_details(item) for item in items]
    if isinstance(value, str):
        return sanitize_text(value, _DETAIL_TEXT_MAX)
    if value is None or isinstance(value, bool | int | float):
        return value
    return sanitize_text(str(value), _DETAIL_TEXT_MAX)  # UUIDs, datetimes, enums


def _text(value: str | None, max_len: int) -> str | None:
    # max_len is the column's length, so the stored text is exactly what was hashed.
    return None if value is None else sanitize_text(value, max_len)


_ROWS = AuditLog.__table__.c
_LAST_ROW = DriverQuery(
    select(_ROWS.seq, _ROWS.row_hash)
    .where(_ROWS.tenant_id == bindparam("tenant_id"))
    .order_by(_ROWS.seq.desc())
    .limit(1)
)
_WRITTEN = ("tenant_id", "seq", "at", "actor_type", "actor_id", "source_ip", "user_agent")
_WRITTEN += ("action", "object_type", "object_id", "result", "reason", "details")
_WRITTEN += ("prev_hash", "row_hash")
_INSERT_ROW = DriverQuery(
    insert(AuditLog.__table__)
    .values({name: bindparam(name) for name in _WRITTEN})
    .returning(_ROWS.id)
)


def record(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    action: str,
    result: str = "success",
    actor_type: str = "system",
    actor_id: str | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> Recorded:
    """Append one row to ``tenant_id``'s chain in the caller's (read-write) transaction.

    Text is sanitised to one line and cut to its column's length; details keys
    that look like secrets get the value ``"[redacted]"``.
    """
    if result not in RESULTS:
        raise ValueError(f"audit result must be one of {sorted(RESULTS)}, not {result!r}")
    if actor_type not in ACTOR_TYPES:
        raise ValueError(f"audit actor_type must be one of {sorted(ACTOR_TYPES)}")
    # A JSON round trip now gives exactly what the database will hand back to verify().
    clean = json.loads(json.dumps(_clean_details(dict(details or {})), allow_nan=False))
    when = require_aware(at, "at") if at is not None else utc_now()
    _lock_tenant_chain(session, tenant_id)
    connection = session.connection()
    last = _LAST_ROW.first(connection, {"tenant_id": tenant_id})
    seq, prev_hash = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
    audit_record = AuditRecord(
        tenant_id=str(tenant_id),
        seq=seq,
        at=when,
        actor_type=actor_type,
        actor_id=_text(actor_id, 64),
        source_ip=_text(source_ip, 45),
        user_agent=_text(user_agent, 512),
        action=sanitize_text(action, 64),
        object_type=_text(object_type, 64),
        object_id=_text(object_id, 64),
        result=result,
        reason=_text(reason, 2000),
        details=clean,
    )
    stored = chain_row(audit_record, prev_hash)
    values = {
        "tenant_id": tenant_id,
        "seq": seq,
        "at": when,
        "actor_type": audit_record.actor_type,
        "actor_id": audit_record.actor_id,
        "source_ip": audit_record.source_ip,
        "user_agent": audit_record.user_agent,
        "action": audit_record.action,
        "object_type": audit_record.object_type,
        "object_id": audit_record.object_id,
        "result": audit_record.result,
        "reason": audit_record.reason,
        "details": clean,
        "prev_hash": stored.prev_hash,
        "row_hash": stored.row_hash,
    }
    # A Core insert: written at once, so the next record() in this transaction sees
    # it as the last row, without the unit of work's bookkeeping on every request.
    inserted = _INSERT_ROW.first(connection, values)
    assert inserted is not None
    return Recorded(int(inserted[0]), seq, stored.row_hash)


def record_as(
    session: Session, actor: Actor, *, tenant_id: uuid.UUID, action: str, **fields: Any
) -> Recorded:
    """:func:`record` with the actor's fields taken from ``actor``."""
    return record(
        session,
        tenant_id=tenant_id,
        action=action,
        actor_type=actor.type,
        actor_id=actor.id,
        source_ip=actor.source_ip,
        user_agent=actor.user_agent,
        **fields,
    )


# --- verification ------------------------------------------------------------------


def _stored_rows(session: Session, tenant_id: uuid.UUID) -> Generator[StoredAuditRow, None, None]:
    rows = session.scalars(
        select(AuditLog)
        .where(AuditLog.tenant_id == tenant_id)
        .order_by(AuditLog.seq)
        .execution_options(yield_per=1000)
    )
    # Verification stops at the first break: close the (server-side) cursor then too.
    with rows:
        for row in rows:
            yield StoredAuditRow(
                record=AuditRecord(
                    tenant_id=str(row.tenant_id),
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
                ),
                prev_hash=row.prev_hash,
                row_hash=row.row_hash,
            )


def verify(
    session: Session, tenant_id: uuid.UUID | None = None
) -> list[tuple[uuid.UUID, ChainReport]]:
    """Check the stored chain of one tenant, or of every tenant (by slug)."""
    if tenant_id is not None:
        tenant_ids = [tenant_id]
    else:
        tenant_ids = list(session.scalars(select(Tenant.id).order_by(Tenant.slug)))
    reports = []
    for tid in tenant_ids:
        with closing(_stored_rows(session, tid)) as rows:
            reports.append((tid, verify_chain(rows)))
    return reports


def count_rows(session: Session, tenant_id: uuid.UUID | None = None) -> int:
    """How many audit rows are stored, for one tenant or all."""
    query = select(func.count()).select_from(AuditLog)
    if tenant_id is not None:
        query = query.where(AuditLog.tenant_id == tenant_id)
    return int(session.scalar(query) or 0)


# --- listing -------------------------------------------------------------------------


def list_entries(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    action: str | None = None,
    actor_id: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    result: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_PAGE,
    cursor: int | None = None,
) -> tuple[list[AuditLog], int | None]:
    """One page of a tenant's audit rows, newest first, and the cursor of the next page.

    ``since`` is inclusive and ``until`` exclusive. ``cursor`` is the value
    returned with the previous page (a seq: rows strictly older are listed);
    the next cursor is None on the last page.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidValue("limit", f"must be between 1 and {MAX_PAGE}")
    query = select(AuditLog).where(AuditLog.tenant_id == tenant_id)
    filters = (
        (AuditLog.action, action),
        (AuditLog.actor_id, actor_id),
        (AuditLog.object_type, object_type),
        (AuditLog.object_id, object_id),
        (AuditLog.result, result),
    )
    for column, wanted in filters:
        if wanted is not None:
            query = query.where(column == wanted)
    if since is not None:
        query = query.where(AuditLog.at >= require_aware(since, "since"))
    if until is not None:
        query = query.where(AuditLog.at < require_aware(until, "until"))
    if cursor is not None:
        query = query.where(AuditLog.seq < cursor)
    # One row more than asked tells whether another page exists.
    rows = list(session.scalars(query.order_by(AuditLog.seq.desc()).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].seq
    return rows, None
