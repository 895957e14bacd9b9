"""One branch at work: its cache, its sync thread, and the commands of one counter.

:class:`Workspace` is what the main window talks to. Every counter action is a
core command run by :meth:`LocalCache.execute` (one short SQLite transaction that
writes the outbox and the projection), so everything works offline; the sync
thread is woken by the cache and sends it when it can. Reads come back as a
:class:`Snapshot` of plain views, which the window shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from core.commands import (
    CallNext,
    CallTicket,
    Cancel,
    CloseCounter,
    Command,
    Complete,
    MarkNoShow,
    OpenCounter,
    Park,
    PauseCounter,
    Recall,
    ResumeCounter,
    ReturnTicket,
    StartService,
    Transfer,
)
from core.events import Customer, EventBase, TicketIssued
from core.kpi import KpiReport
from core.kpi_rows import ALL, Filters
from core.values import Outcome, PriorityClass, TransferPosition
from desktop.bridge import SyncBridge
from desktop.live_queues import LiveQueues, QueueEdits
from desktop.session import Authenticator, SignedIn
from sync.client.cache import LocalCache
from sync.client.engine import EngineSettings
from sync.client.paths import cache_path
from sync.client.thread import SyncThread
from sync.client.views import Alert, CounterView, QueueRow, ServiceView, TicketView
from sync.protocol import ReferenceData

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class NoTicket(Exception):  # noqa: N818 - reads as what is missing
    """The action needs a current ticket and the counter has none."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the window shows, read from the cache in one go."""

    services: list[ServiceView]
    waiting: dict[str, list[QueueRow]]  # non-empty queues, in call order
    counters: list[CounterView]
    counter: CounterView | None
    current: TicketView | None
    parked: list[TicketView]
    outbox: int
    last_synced: datetime | None
    alerts: list[Alert]
    pause_reasons: list[str] = field(default_factory=list)
    staff_names: dict[str, str] = field(default_factory=dict)


class Workspace(QObject):
    """A branch's cache and sync thread, and the chosen counter; see the module docstring."""

    changed = Signal()  # a local command committed
    # QueueEdits: how a read of the cache changed the queues (see desktop.live_queues)
    queues_edited = Signal(object)

    def __init__(
        self,
        signed_in: SignedIn,
        branch_id: str,
        cache: LocalCache,
        bridge: SyncBridge,
        *,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__()
        self.signed_in, self.branch_id = signed_in, branch_id
        self.cache, self.bridge = cache, bridge
        self.sync: SyncThread | None = None
        self._sync_with: tuple[Authenticator, EngineSettings | None] | None = None
        self.counter_id: str | None = None
        self._clock = clock
        # The queues as last read, kept up to date from the cache's change log so an
        # action re-reads the tickets it changed, not every waiting ticket.
        self.live = LiveQueues()
        # Services change only with reference data (which the cache replaces whole).
        self._service_list: list[ServiceView] | None = None
        self._service_ref: ReferenceData | None = None

    @classmethod
    def open(
        cls,
        auth: Authenticator,
        signed_in: SignedIn,
        branch_id: str,
        data_dir: Path,
        bridge: SyncBridge,
        *,
        sync: bool = True,
        start: bool = True,
        engine_settings: EngineSettings | None = None,
    ) -> Workspace:
        """Open the branch's cache and, with ``sync``, its sync thread.

        With ``start=False`` the thread starts at :meth:`start_sync` (the console
        shows the queues first). A syncing workspace leaves the comparison of the
        cache's projection with its log, a read of every ticket, to the sync thread.
        """
        path = cache_path(data_dir, signed_in.server_url, signed_in.tenant, branch_id)
        cache = LocalCache.open(path, branch_id, verify=not sync)
        workspace = cls(signed_in, branch_id, cache, bridge)
        workspace._sync_with = (auth, engine_settings) if sync else None
        if sync and start:
            try:
                workspace.start_sync()
            except BaseException:
                cache.close()
                raise
        return workspace

    def start_sync(self) -> None:
        """Start the sync thread (once; nothing for a workspace opened without sync)."""
        if self._sync_with is None or self.sync is not None:
            return
        from desktop.sync_link import start_sync

        auth, settings = self._sync_with
        self.sync = start_sync(
            auth,
            self.cache,
            self.bridge,
            server_url=self.signed_in.server_url,
            tenant=self.signed_in.tenant,
            branch_id=self.branch_id,
            settings=settings,
        )

    def close(self) -> None:
        if self.sync is not None:
            if not self.sync.stop():
                log.warning("the sync thread did not stop in time")
            self.sync = None
        self.cache.close()

    # -- who may do what -------------------------------------------------------------

    @property
    def permissions(self) -> frozenset[str]:
        return self.signed_in.branch_permissions(self.branch_id)

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def actor_id(self) -> str:
        return str(self.signed_in.user.id)

    # -- reading ------------------------------------------------------------------------

    def reference(self) -> ReferenceData | None:
        return self.cache.reference()

    def snapshot(self) -> Snapshot:
        cache = self.cache
        # one read for the counters, this counter's current and parked tickets (the cache
        # knows who parked each, so they survive a restart), the sync time, the alerts
        # and the outbox size
        state = cache.console_state(self.counter_id)
        waiting = self.waiting()
        ref = self.reference()
        return Snapshot(
            services=self._services(ref),
            waiting=waiting,
            counters=state.counters,
            counter=state.counter,
            current=state.current,
            parked=state.parked,
            outbox=state.outbox,
            last_synced=state.last_synced_at,
            alerts=state.alerts,
            pause_reasons=list(ref.pause_reasons) if ref else [],
            staff_names={s.id: s.display_name for s in ref.staff} if ref else {},
        )

    def _services(self, reference: ReferenceData | None) -> list[ServiceView]:
        """The services with their waiting counts; read again only with new reference data."""
        if self._service_list is None or reference is not self._service_ref:
            self._service_list = self.cache.services({})
            self._service_ref = reference
        counts = self.live.counts()
        return [replace(s, waiting=counts.get(s.id, 0)) for s in self._service_list]

    def waiting(self) -> dict[str, list[QueueRow]]:
        """Waiting tickets by service in call order (fresh lists, shared rows)."""
        self.catch_up()
        return self.live.queues()

    def waiting_count(self, service_id: str) -> int:
        self.catch_up()
        return len(self.live.queue(service_id))

    def catch_up(self) -> QueueEdits:
        """Fold the cache's changes since the last read into :attr:`live`; announce them."""
        edits = self.live.apply(self.cache.waiting_changes(self.live.change))
        if edits:
            self.queues_edited.emit(edits)
        return edits

    def current_ticket(self) -> TicketView | None:
        if self.counter_id is None:
            return None
        return self.cache.current_ticket(self.counter_id)

    def today_report(self) -> KpiReport:
        """Today's KPIs (the branch-local day) from the cache's SQL, for the dashboard."""
        day = self.cache.local_day(self._clock())
        return self.cache.report(filters=Filters(first_day=day, last_day=day))[ALL]

    def acknowledge(self, alert_ids: list[int]) -> None:
        self.cache.acknowledge_alerts(alert_ids)
        self.changed.emit()

    # -- commands -----------------------------------------------------------------------

    def execute(self, command: Command) -> list[EventBase]:
        """Run ``command`` on the cache; raises the core's error with its message."""
        events = self.cache.execute(command)
        self.changed.emit()
        return events

    def _run(self, kind: type[Command], **fields: Any) -> None:
        self.execute(kind(at=self._clock(), actor_id=self.actor_id, **fields))

    def _counter(self) -> str:
        if self.counter_id is None:
            raise NoTicket("Choose your counter first.")
        return self.counter_id

    def _current(self) -> str:
        ticket = self.current_ticket()
        if ticket is None:
            raise NoTicket("There is no current ticket at this counter.")
        return ticket.id

    def call_next(self) -> None:
        self._run(CallNext, counter_id=self._counter())

    def call_ticket(self, ticket_id: str) -> None:
        self._run(CallTicket, counter_id=self._counter(), ticket_id=ticket_id)

    def recall(self) -> None:
        self._run(Recall, ticket_id=self._current())

    def start(self) -> None:
        self._run(StartService, ticket_id=self._current())

    def complete(self, outcome: Outcome = Outcome.SERVED) -> None:
        self._run(Complete, ticket_id=self._current(), outcome=outcome)

    def no_show(self) -> None:
        self._run(MarkNoShow, ticket_id=self._current())

    def transfer(self, service_id: str, position: TransferPosition) -> None:
        self._run(Transfer, ticket_id=self._current(), to_service_id=service_id, position=position)

    def park(self, note: str | None = None) -> None:
        self._run(Park, ticket_id=self._current(), note=note or None)

    def return_ticket(self, ticket_id: str) -> None:
        self._run(ReturnTicket, ticket_id=ticket_id)

    def cancel(self, ticket_id: str | None = None, reason: str | None = None) -> None:
        self._run(Cancel, ticket_id=ticket_id or self._current(), reason=reason or None)

    def open_counter(self) -> None:
        self._run(OpenCounter, counter_id=self._counter())

    def pause(self, reason: str) -> None:
        self._run(PauseCounter, counter_id=self._counter(), reason=reason)

    def resume(self) -> None:
        self._run(ResumeCounter, counter_id=self._counter())

    def close_counter(self) -> None:
        self._run(CloseCounter, counter_id=self._counter())

    def issue(
        self, service_id: str, priority: PriorityClass, customer_name: str | None = None
    ) -> TicketIssued:
        customer = Customer(name=customer_name) if customer_name else None
        issued = self.cache.issue_ticket(
            service_id,
            at=self._clock(),
            actor_id=self.actor_id,
            priority=priority,
            customer=customer,
        )
        self.changed.emit()
        return issued
