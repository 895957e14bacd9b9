"""What a console pulls: pages of the branch's event log, and its reference data.

Events come by ``server_seq`` only (never by device clocks); rejected events
are kept in the log for audit but never pulled. Reference data (the branch,
its services and counters, staff names, pause reasons, the caller's
permissions and device slot) is everything a console needs to work offline. It
is versioned by a hash of its content, so a console that sends the version it
holds gets the data again only when something in it changed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.orm import Session

from core import state_codec
from server.models import Counter, PauseReason, QueueEvent, Service, User, UserRole
from server.services.grants import Grants
from server.services.queue_state import BRANCH_STATES, BranchInfo
from sync.protocol import (
    BranchRef,
    BranchStateBody,
    CounterRef,
    ReferenceData,
    ServiceRef,
    StaffRef,
)


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of the log, its events already in their wire form.

    Pages are read far more often than events are written (every console pulls
    every event; a new device pulls the whole log), so the stored JSON goes out
    as it is, without being parsed into objects and encoded again.
    """

    events_json: list[str]  # each one PulledEvent as JSON
    cursor: int  # the last server_seq returned, else ``after``
    has_more: bool

    def events_array(self) -> str:
        """The page's events as a JSON array."""
        return "[" + ",".join(self.events_json) + "]"

    def stream_message(self) -> str:
        """The page as a :class:`sync.protocol.StreamMessage` in JSON."""
        return f'{{"events":{self.events_array()},"cursor":{self.cursor}}}'


def read_events(session: Session, branch_id: uuid.UUID, after: int, limit: int) -> EventPage:
    """Accepted events of the branch with ``server_seq > after``, ascending, at most ``limit``."""
    # On the session's connection: plain rows, without the ORM's per-row loading
    # (a new device reads the whole log through here).
    conn = session.connection()
    rows = conn.execute(
        select(QueueEvent.server_seq, cast(QueueEvent.payload, Text))
        .where(
            QueueEvent.branch_id == branch_id,
            QueueEvent.status == "accepted",
            QueueEvent.server_seq > after,
        )
        .order_by(QueueEvent.server_seq)
        .limit(limit + 1)  # one more tells whether another page follows
    ).all()
    page = rows[:limit]
    events = [f'{{"server_seq":{seq},"event":{raw}}}' for seq, raw in page]
    cursor = page[-1][0] if page else after
    return EventPage(events, cursor, has_more=len(rows) > limit)


def branch_state(session: Session, branch: BranchInfo) -> BranchStateBody | None:
    """The branch's state as this transaction sees the log, encoded; None for an empty log.

    Folding a long log costs a new device far more than reading it: with this it
    stores the events and starts from the service's fold. The state is encoded
    under the branch's in-process mutex (writers of the branch wait for it, once
    per new device), since it is the shared object writers fold into.
    """
    if not state_codec.knows_shapes():
        return None  # core changed shape without the codec: the device folds the log
    with BRANCH_STATES.use(session, branch.tenant_id, branch.id) as lease:
        if lease.server_seq == 0 or lease.last_event_id is None:
            return None
        body = state_codec.encode(lease.state)
        server_seq, event_id = lease.server_seq, lease.last_event_id
    count = session.connection().execute(
        select(func.count()).where(
            QueueEvent.branch_id == branch.id,
            QueueEvent.status == "accepted",
            QueueEvent.server_seq <= server_seq,
        )
    )
    return BranchStateBody(
        format=state_codec.FORMAT,
        server_seq=server_seq,
        event_id=event_id,
        events=count.scalar_one(),
        body=body,
    )


def reference_data(
    session: Session, branch: BranchInfo, grants: Grants, device_slot: int | None
) -> ReferenceData:
    """The branch's reference data as the caller sees it, with its content version."""
    # Every pull reads these to compare versions: columns on the session's
    # connection, not ORM objects.
    pause_reasons = (
        session.connection()
        .execute(
            select(PauseReason.label).where(
                PauseReason.tenant_id == branch.tenant_id, PauseReason.active.is_(True)
            )
        )
        .scalars()
    )
    unversioned = ReferenceData(
        version="",
        branch=BranchRef(
            id=str(branch.id),
            name=branch.name,
            time_zone=branch.time_zone,
            day_starts_at_min=branch.day_starts_at,
        ),
        services=_services(session, branch.id),
        counters=_counters(session, branch.id),
        staff=_staff(session, branch),
        pause_reasons=sorted(pause_reasons),
        permissions=sorted(grants.tenant_wide | grants.by_branch.get(branch.id, frozenset())),
        device_slot=device_slot,
    )
    return unversioned.model_copy(update={"version": _version(unversioned)})


def _services(session: Session, branch_id: uuid.UUID) -> list[ServiceRef]:
    rows = session.connection().execute(
        select(Service.id, Service.code, Service.name, Service.target_wait_s, Service.active)
        .where(Service.branch_id == branch_id)
        .order_by(Service.code, Service.id)
    )
    return [
        ServiceRef(id=str(sid), code=code, name=name, target_wait_s=target, active=active)
        for sid, code, name, target, active in rows
    ]


def _counters(session: Session, branch_id: uuid.UUID) -> list[CounterRef]:
    rows = session.connection().execute(
        select(Counter.id, Counter.name, Counter.work_profile, Counter.active)
        .where(Counter.branch_id == branch_id)
        .order_by(Counter.number, Counter.id)
    )
    return [
        CounterRef(
            id=str(cid), name=name, work_profile=[str(s) for s in profile or ()], active=active
        )
        for cid, name, profile, active in rows
    ]


def _staff(session: Session, branch: BranchInfo) -> list[StaffRef]:
    """Enabled users with a role at this branch or tenant-wide, by display name."""
    with_access = select(UserRole.user_id).where(
        UserRole.tenant_id == branch.tenant_id,
        or_(UserRole.branch_id.is_(None), UserRole.branch_id == branch.id),
    )
    conn = session.connection()
    rows = conn.execute(
        select(User.id, User.display_name, User.username).where(
            User.tenant_id == branch.tenant_id,
            User.disabled.is_(False),
            User.id.in_(with_access),
        )
    ).all()
    staff = [StaffRef(id=str(uid), display_name=shown or name) for uid, shown, name in rows]
    return sorted(staff, key=lambda s: (s.display_name.casefold(), s.id))


def _version(data: ReferenceData) -> str:
    """A stable hash of the content: same data, same version, on every replica."""
    text = json.dumps(data.model_dump(mode="json", exclude={"version"}), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
