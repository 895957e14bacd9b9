"""Creating what a branch is made of: the branch itself, services, counters, pause reasons.

Every function validates its input (raising :class:`core.errors.InvalidValue`),
refuses duplicates with :class:`~server.services.errors.Conflict`, looks up ids
only within the given tenant (another tenant's branch is
:class:`~server.services.errors.NotFound`), and writes an audit record.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidValue
from core.values import ServiceCode, TimeZoneName
from server.models import Branch, Counter, PauseReason, Service
from server.services import audit
from server.services.audit import SYSTEM, Actor
from server.services.errors import Conflict, NotFound

BRANCH_CODE: Final = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")


def clean_text(field_name: str, value: str, max_len: int) -> str:
    """``value`` with runs of whitespace made one space; 1 to ``max_len`` characters."""
    cleaned = " ".join(value.split())
    if not cleaned or len(cleaned) > max_len:
        raise InvalidValue(field_name, f"needs 1 to {max_len} characters")
    return cleaned


def get_branch(session: Session, tenant_id: uuid.UUID, branch_id: uuid.UUID) -> Branch:
    branch = session.scalar(
        select(Branch).where(Branch.id == branch_id, Branch.tenant_id == tenant_id)
    )
    if branch is None:
        raise NotFound(f"no branch {branch_id}")
    return branch


def create_branch(
    session: Session,
    tenant_id: uuid.UUID,
    name: str,
    code: str,
    time_zone: str,
    *,
    day_starts_at: int = 0,
    actor: Actor = SYSTEM,
) -> Branch:
    """A new branch; ``code`` is short and unique in the tenant, ``time_zone`` IANA."""
    name = clean_text("name", name, 200)
    code = code.strip().upper()
    if not BRANCH_CODE.fullmatch(code):
        raise InvalidValue("code", f"{code!r} must be 1 to 32 letters, digits, '-' or '_'")
    zone = TimeZoneName(time_zone)
    if not 0 <= day_starts_at < 1440:
        raise InvalidValue("day_starts_at", "must be minutes after midnight, 0 to 1439")
    taken = select(Branch.id).where(Branch.tenant_id == tenant_id, Branch.code == code)
    if session.scalar(taken) is not None:
        raise Conflict(f"a branch with code {code!r} already exists")
    branch = Branch(
        tenant_id=tenant_id,
        name=name,
        code=code,
        time_zone=zone.value,
        day_starts_at=day_starts_at,
    )
    session.add(branch)
    session.flush()
    audit.record_as(
        session,
        actor,
        tenant_id=tenant_id,
        action="branch.created",
        object_type="branch",
        object_id=str(branch.id),
        details={"name": name, "code": code, "time_zone": zone.value},
    )
    return branch


def create_service(
    session: Session,
    tenant_id: uuid.UUID,
    branch_id: uuid.UUID,
    code: str,
    name: str,
    *,
    target_wait_s: int | None = None,
    actor: Actor = SYSTEM,
) -> Service:
    """A new service (queue) at a branch; ``code`` prefixes its ticket numbers."""
    get_branch(session, tenant_id, branch_id)
    service_code = ServiceCode.parse(code)
    name = clean_text("name", name, 200)
    if target_wait_s is not None and target_wait_s <= 0:
        raise InvalidValue("target_wait_s", "must be a positive number of seconds, or none")
    taken = select(Service.id).where(
        Service.branch_id == branch_id, Service.code == service_code.value
    )
    if session.scalar(taken) is not None:
        raise Conflict(f"the branch already has a service {service_code.value!r}")
    service = Service(
        tenant_id=tenant_id,
        branch_id=branch_id,
        code=service_code.value,
        name=name,
        target_wait_s=target_wait_s,
    )
    session.add(service)
    session.flush()
    audit.record_as(
        session,
        actor,
        tenant_id=tenant_id,
        action="service.created",
        object_type="service",
        object_id=str(service.id),
        details={"branch_id": str(branch_id), "code": service_code.value, "name": name},
    )
    return service


def create_counter(
    session: Session,
    tenant_id: uuid.UUID,
    branch_id: uuid.UUID,
    number: int,
    name: str,
    work_profile: Sequence[uuid.UUID] = (),
    *,
    actor: Actor = SYSTEM,
) -> Counter:
    """A new counter; ``work_profile`` lists services of the same branch, in call order."""
    get_branch(session, tenant_id, branch_id)
    if isinstance(number, bool) or not 1 <= number <= 9999:
        raise InvalidValue("number", "must be between 1 and 9999")
    name = clean_text("name", name, 100)
    if len(set(work_profile)) != len(work_profile):
        raise InvalidValue("work_profile", "lists a service twice")
    known = set(
        session.scalars(
            select(Service.id).where(Service.tenant_id == tenant_id, Service.branch_id == branch_id)
        )
    )
    unknown = [str(s) for s in work_profile if s not in known]
    if unknown:
        raise InvalidValue("work_profile", f"no such service at this branch: {', '.join(unknown)}")
    taken = select(Counter.id).where(Counter.branch_id == branch_id, Counter.number == number)
    if session.scalar(taken) is not None:
        raise Conflict(f"the branch already has a counter {number}")
    counter = Counter(
        tenant_id=tenant_id,
        branch_id=branch_id,
        number=number,
        name=name,
        work_profile=[str(s) for s in work_profile],
    )
    session.add(counter)
    session.flush()
    audit.record_as(
        session,
        actor,
        tenant_id=tenant_id,
        action="counter.created",
        object_type="counter",
        object_id=str(counter.id),
        details={"branch_id": str(branch_id), "number": number, "name": name},
    )
    return counter


def create_pause_reason(
    session: Session, tenant_id: uuid.UUID, label: str, *, actor: Actor = SYSTEM
) -> PauseReason:
    """A reason staff can pick when pausing a counter; unique per tenant."""
    label = clean_text("label", label, 100)
    taken = select(PauseReason.id).where(
        PauseReason.tenant_id == tenant_id, PauseReason.label == label
    )
    if session.scalar(taken) is not None:
        raise Conflict(f"a pause reason {label!r} already exists")
    reason = PauseReason(tenant_id=tenant_id, label=label)
    session.add(reason)
    session.flush()
    audit.record_as(
        session,
        actor,
        tenant_id=tenant_id,
        action="pause_reason.created",
        object_type="pause_reason",
        object_id=str(reason.id),
        details={"label": label},
    )
    return reason
