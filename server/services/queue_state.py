"""The authoritative branch state the service decides with, cached per process.

:class:`BranchStates` keeps one :class:`core.state.BranchState` per branch with
the ``server_seq`` and event id it reflects. Each use catches it up from the
event log inside the caller's transaction, so events appended by another server
process are always folded in before a decision.

The cache is *checked* against the log on every use rather than trusted: the
event stored at the cached ``server_seq`` must be the one the cache last folded.
A transaction that was rolled back after this module returned (its events
gone, its seqs reused by someone else) therefore costs one rebuild, never a
wrong state. Reference data (services, counters, zone, day start) is read on
every use too, a handful of rows, and any difference from the cached copy
rebuilds the state from scratch: exact, and cheaper than reasoning about which
edits a cached state could absorb.

Writers serialise per branch with :func:`lock_branch` (PostgreSQL: the branch's
``branch_sequences`` row ``FOR UPDATE``; SQLite: ``BEGIN IMMEDIATE`` already
holds the database's write lock). Within one process a per-branch mutex guards
the shared state object; it is always taken *after* the database lock, and only
for the duration of one call, never across a transaction.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import String, bindparam, select, type_coerce
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from core.events import parse_event
from core.machine import apply
from core.state import BranchState, CounterConfig, ServiceConfig
from server.db import DriverQuery, as_uuid_value
from server.models import Branch, BranchSequence, Counter, QueueEvent, Service
from server.services.errors import NotFound

IdLike = uuid.UUID | str


class NotFoundInTenant(NotFound):
    """A branch, service, counter or ticket that does not exist in the caller's tenant."""


class TicketNotFound(NotFoundInTenant):
    """No ticket with this id in the caller's tenant."""


def as_uuid(value: IdLike, what: str) -> uuid.UUID:
    """``value`` as a UUID; a malformed id is simply not found."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise NotFoundInTenant(f"There is no {what} {value!r}") from None


def lock_branch(session: Session, branch_id: uuid.UUID) -> None:
    """Serialise writers of one branch until the end of the current transaction."""
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: every write transaction began with BEGIN IMMEDIATE
    locked = (
        select(BranchSequence.last_server_seq)
        .where(BranchSequence.branch_id == branch_id)
        .with_for_update()
    )
    if session.execute(locked).first() is None:
        # A concurrent first writer blocks this insert until it commits; then the
        # insert does nothing and the SELECT waits for its lock like any other.
        session.execute(
            postgresql.insert(BranchSequence)
            .values(branch_id=branch_id, last_server_seq=0)
            .on_conflict_do_nothing(index_elements=["branch_id"])
        )
        session.execute(locked).one()


@dataclass(frozen=True, slots=True)
class BranchConfig:
    """A branch's reference data, as the core state is built from it."""

    time_zone: str
    day_starts_at_min: int
    services: tuple[ServiceConfig, ...]
    counters: tuple[CounterConfig, ...]
    # Services not taking tickets now. Not part of what the state is built from:
    # switching a service off or on does not rebuild the state.
    inactive: frozenset[str] = field(default=frozenset(), compare=False)

    def service(self, service_id: str) -> ServiceConfig | None:
        return next((s for s in self.services if s.id == service_id), None)

    def new_state(self, branch_id: uuid.UUID) -> BranchState:
        return BranchState.new(
            str(branch_id), self.time_zone, self.services, self.counters, self.day_starts_at_min
        )


@dataclass(frozen=True, slots=True)
class BranchInfo:
    """The columns of a branch the queue paths use, read without the ORM."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    time_zone: str
    day_starts_at: int


# The statements of the queue paths are built once, on table columns: building
# and caching an ORM statement on every request cost more than running it.
_BRANCHES = Branch.__table__.c
_BRANCH = DriverQuery(
    select(_BRANCHES.tenant_id, _BRANCHES.name, _BRANCHES.time_zone, _BRANCHES.day_starts_at).where(
        _BRANCHES.id == bindparam("branch_id")
    )
)
_SERVICES = Service.__table__.c
# Ids and the work profile come back as the driver hands them (no result
# processing): they are compared with the last read, and only turned into a
# BranchConfig when they differ.
_CONFIG_SERVICES = DriverQuery(
    select(
        type_coerce(_SERVICES.id, String),
        _SERVICES.code,
        _SERVICES.name,
        _SERVICES.target_wait_s,
        _SERVICES.active,
    )
    .where(_SERVICES.branch_id == bindparam("branch_id"))
    .order_by(_SERVICES.id)
)
_COUNTERS = Counter.__table__.c
_CONFIG_COUNTERS = DriverQuery(
    select(
        type_coerce(_COUNTERS.id, String),
        _COUNTERS.name,
        type_coerce(_COUNTERS.work_profile, String),
    )
    .where(_COUNTERS.branch_id == bindparam("branch_id"))
    .order_by(_COUNTERS.id)
)
_EVENTS = QueueEvent.__table__.c
_LOG = DriverQuery(
    select(_EVENTS.id, _EVENTS.server_seq, _EVENTS.payload)
    .where(
        _EVENTS.branch_id == bindparam("branch_id"),
        _EVENTS.status == "accepted",
        _EVENTS.server_seq >= bindparam("from_seq"),
    )
    .order_by(_EVENTS.server_seq)
)
_REFS = "queuedesk.branch_refs"


def find_branch(session: Session, tenant_id: IdLike, branch_id: IdLike) -> BranchInfo:
    """The branch, or :class:`NotFoundInTenant` (also for another tenant's branch).

    A second call in the same transaction is answered from memory.
    """
    tid, bid = as_uuid(tenant_id, "tenant"), as_uuid(branch_id, "branch")
    connection = session.connection()  # begins the transaction when none has begun
    transaction = session.get_transaction()
    memo: tuple[Any, dict[uuid.UUID, BranchInfo]] | None = session.info.get(_REFS)
    if memo is None or memo[0] is not transaction:
        memo = session.info[_REFS] = (transaction, {})
    branch = memo[1].get(bid)
    if branch is None:
        row = _BRANCH.first(connection, {"branch_id": bid})
        if row is None:
            raise NotFoundInTenant(f"There is no branch {bid}")
        tenant, name, time_zone, day_starts_at = row
        branch = BranchInfo(bid, as_uuid_value(tenant), name, time_zone, day_starts_at)
        memo[1][bid] = branch
    if branch.tenant_id != tid:
        raise NotFoundInTenant(f"There is no branch {bid}")
    return branch


_RawConfig = tuple[str, int, tuple[Any, ...], tuple[Any, ...]]
# The last config built per branch, with the rows it was built from: an
# unchanged read (nearly every request) costs a comparison, not 50 objects.
_CONFIGS: dict[uuid.UUID, tuple[_RawConfig, BranchConfig]] = {}


def read_config(session: Session, branch: BranchInfo) -> BranchConfig:
    """Every service and counter of the branch, inactive ones too: old events name them."""
    connection = session.connection()
    params = {"branch_id": branch.id}
    # Plain tuples, fetched at once: comparing them with the last read is then a
    # C-level comparison, not one Python call per column of every row.
    raw: _RawConfig = (
        branch.time_zone,
        branch.day_starts_at,
        tuple(map(tuple, _CONFIG_SERVICES.rows(connection, params))),
        tuple(map(tuple, _CONFIG_COUNTERS.rows(connection, params))),
    )
    known = _CONFIGS.get(branch.id)
    if known is not None and known[0] == raw:
        return known[1]
    time_zone, day_starts_at, services, counters = raw
    config = BranchConfig(
        time_zone=time_zone,
        day_starts_at_min=day_starts_at,
        services=tuple(
            ServiceConfig(_id_text(sid), code, name, target)
            for sid, code, name, target, _ in services
        ),
        counters=tuple(
            CounterConfig(_id_text(cid), name, tuple(str(s) for s in _json_list(profile)))
            for cid, name, profile in counters
        ),
        inactive=frozenset(_id_text(row[0]) for row in services if not row[4]),
    )
    _CONFIGS[branch.id] = (raw, config)
    return config


def _id_text(value: Any) -> str:
    """A UUID column's raw value (SQLite: 32 hex digits; PostgreSQL: a UUID) as ``str(uuid)``."""
    return str(as_uuid_value(value))


def _json_list(value: Any) -> list[Any]:
    """A JSON column's raw value (SQLite: the text; PostgreSQL: already decoded) as a list."""
    decoded = json.loads(value) if isinstance(value, str | bytes) else value
    return list(decoded or ())


@dataclass(slots=True)
class _Entry:
    """One branch's cached state; ``state`` None means build it on next use."""

    mutex: threading.Lock = field(default_factory=threading.Lock)
    state: BranchState | None = None
    config: BranchConfig | None = None
    server_seq: int = 0
    last_event_id: uuid.UUID | None = None
    hints: dict[tuple[str, date], int] = field(default_factory=dict)


@dataclass(slots=True)
class BranchLease:
    """A branch state checked out for one call; see :meth:`BranchStates.use`."""

    branch: BranchInfo
    config: BranchConfig
    state: BranchState
    server_seq: int
    last_event_id: uuid.UUID | None
    mutating: bool = False  # set before folding new events: a failure then drops the state
    # Where to start looking for the service's next own number, per (prefix, day):
    # kept with the state and dropped with it, so a stale hint never outlives it.
    hints: dict[tuple[str, date], int] = field(default_factory=dict)

    def advanced(self, server_seq: int, last_event_id: uuid.UUID) -> None:
        """Record that ``state`` now reflects the log up to ``server_seq``."""
        self.server_seq, self.last_event_id = server_seq, last_event_id


class BranchStates:
    """A process-wide cache of branch states, caught up from the log on every use."""

    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, _Entry] = {}
        self._entries_mutex = threading.Lock()

    def load(self, session: Session, tenant_id: IdLike, branch_id: IdLike) -> BranchState:
        """The branch's state as this transaction sees the log. Read it; do not mutate it."""
        with self.use(session, tenant_id, branch_id) as lease:
            return lease.state

    def drop(self, branch_id: IdLike) -> None:
        """Forget a branch's state; the next use rebuilds it from the log."""
        entry = self._entries.get(as_uuid(branch_id, "branch"))
        if entry is not None:
            with entry.mutex:
                entry.state = None

    def is_cached(self, branch_id: IdLike) -> bool:
        entry = self._entries.get(as_uuid(branch_id, "branch"))
        return entry is not None and entry.state is not None

    @contextmanager
    def use(
        self, session: Session, tenant_id: IdLike, branch_id: IdLike, *, lock: bool = False
    ) -> Iterator[BranchLease]:
        """Check out a branch's state, caught up with the log, for the length of the block.

        ``lock`` takes :func:`lock_branch` first (writers), so what the session sees of
        the log is final. Without it (a reader), a cached state ahead of what the
        session can see (another transaction's uncommitted write) is left alone and a
        private copy is built instead. If the block raises after setting
        ``lease.mutating``, the cached state is dropped: it may be half-changed.
        """
        held = _held_in(session, tenant_id, branch_id)
        if held is not None:
            branch, config = held
        else:
            # The database lock comes before the in-process mutex, always, so the two
            # cannot deadlock; the branch query also begins the transaction.
            branch = find_branch(session, tenant_id, branch_id)
            if lock:
                lock_branch(session, branch.id)
            config = read_config(session, branch)
        entry = self._entry(branch.id)
        with entry.mutex:
            if held is not None and entry.state is not None and entry.config == config:
                # This transaction holds the branch lock: no one else can have appended
                # since its last use, and this process's state includes its own writes.
                lease = BranchLease(
                    branch,
                    config,
                    entry.state,
                    entry.server_seq,
                    entry.last_event_id,
                    hints=entry.hints,
                )
            else:
                lease = _checkout(session, branch, config, entry, locked=lock or held is not None)
            if lock:
                _hold(session, branch, config)
            shared = lease.state is entry.state
            try:
                yield lease
            except BaseException:
                if shared and lease.mutating:
                    entry.state = None
                raise
            if shared:
                entry.server_seq, entry.last_event_id = lease.server_seq, lease.last_event_id

    def _entry(self, branch_id: uuid.UUID) -> _Entry:
        with self._entries_mutex:
            entry = self._entries.get(branch_id)
            if entry is None:
                entry = self._entries[branch_id] = _Entry()
            return entry


_HELD = "queuedesk.branches_held"


def _hold(session: Session, branch: BranchInfo, config: BranchConfig) -> None:
    """Remember that this session's current transaction holds ``branch``'s lock."""
    held = session.info.setdefault(_HELD, {})
    held[branch.id] = (session.get_transaction(), branch, config)


def _held_in(
    session: Session, tenant_id: IdLike, branch_id: IdLike
) -> tuple[BranchInfo, BranchConfig] | None:
    """The branch and config read when this very transaction locked the branch, if it did.

    A later use in the same transaction (the view after a command) then needs no
    queries: the lock means nobody else has appended since.
    """
    held = session.info.get(_HELD)
    if not held:
        return None
    try:
        bid, tid = as_uuid(branch_id, "branch"), as_uuid(tenant_id, "tenant")
    except NotFoundInTenant:
        return None
    found = held.get(bid)
    if found is None:
        return None
    transaction, branch, config = found
    current = session.get_transaction()
    if current is None or current is not transaction or branch.tenant_id != tid:
        return None
    return branch, config


BRANCH_STATES = BranchStates()
"""The process-wide cache every service function uses unless handed another."""


def _checkout(
    session: Session, branch: BranchInfo, config: BranchConfig, entry: _Entry, *, locked: bool
) -> BranchLease:
    """Validate the cached state against the log, rebuild or copy if needed, catch up.

    One query does both: it reads the log from the cached ``server_seq`` on, and
    its first row must be the event the cache last folded.
    """
    if entry.state is not None and entry.config == config:
        rows = _log_from(session, branch.id, entry.server_seq, inclusive=True)
        seen: uuid.UUID | None = None
        if entry.server_seq > 0:
            first = next(rows, None)
            if first is not None and first[1] == entry.server_seq:
                seen = first[0]
        if entry.server_seq == 0 or seen == entry.last_event_id:
            lease = BranchLease(branch, config, entry.state, entry.server_seq, entry.last_event_id)
            lease.hints = entry.hints
            _fold(lease, entry, rows)
            return lease
        if seen is None and not locked:
            # Ahead of this reader's view: someone's write is not committed yet.
            private = BranchLease(branch, config, config.new_state(branch.id), 0, None)
            _fold(private, None, _log_from(session, branch.id, 0))
            return private
    entry.state, entry.config = config.new_state(branch.id), config
    entry.server_seq, entry.last_event_id, entry.hints = 0, None, {}
    lease = BranchLease(branch, config, entry.state, 0, None, hints=entry.hints)
    _fold(lease, entry, _log_from(session, branch.id, 0))
    return lease


_Row = tuple[uuid.UUID, int, Any]  # the payload: a dict, or its JSON text (SQLite)


def _log_from(
    session: Session, branch_id: uuid.UUID, server_seq: int, *, inclusive: bool = False
) -> Iterator[_Row]:
    """The branch's accepted events after (or from) ``server_seq``, in order."""
    start = server_seq if inclusive else server_seq + 1
    rows = _LOG.rows(session.connection(), {"branch_id": branch_id, "from_seq": start})
    return ((as_uuid_value(event_id), seq, payload) for event_id, seq, payload in rows)


def _fold(lease: BranchLease, entry: _Entry | None, rows: Iterator[_Row]) -> None:
    """Fold ``rows`` (accepted events after ``lease.server_seq``) into the lease's state."""
    try:
        for event_id, server_seq, payload in rows:
            apply(lease.state, parse_event(payload))
            lease.advanced(server_seq, event_id)
    except BaseException:
        if entry is not None:
            entry.state = None  # a stored event that no longer folds: never keep half of it
        raise
    if entry is not None:
        entry.server_seq, entry.last_event_id = lease.server_seq, lease.last_event_id
