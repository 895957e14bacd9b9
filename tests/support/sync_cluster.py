"""A branch on a real ``queuedesk-server`` that tests and the chaos benchmark can break.

:func:`seed_branch` puts the tenant of ``tests/server/api_support.py`` (users
``admin`` and ``staff1``, password :data:`~tests.server.api_support.PASSWORD`)
into a migrated database, with two services ("B" and "C") at its main branch and
a few counters that serve both, so tickets can be transferred between queues.

:class:`ServerProcess` runs ``python -m server serve`` on that database on a port
it keeps across restarts, so clients and fault proxies keep their base URL while
the process is stopped, killed with SIGKILL or paused with SIGSTOP.

:func:`server_events` reads the event log straight from the service's database
(accepted and rejected events alike), which is what "arrived exactly once" is
checked against.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
from sqlalchemy import select

from server.db import make_engine, make_session_factory, session_scope
from server.models import QueueEvent
from server.services import branches
from tests.server.api_support import seed
from tests.server.live import free_port

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Branch:
    """What :func:`seed_branch` created: ids as strings, as the sync client uses them."""

    tenant_id: str
    branch_id: str
    services: tuple[str, ...]
    counters: tuple[str, ...]


def seed_branch(database_url: str, *, counters: int = 5) -> Branch:
    """The test tenant, services "B" and "C" and ``counters`` counters serving both."""
    engine = make_engine(database_url)
    try:
        factory = make_session_factory(engine)
        ids = seed(factory)
        tenant, branch = ids["tenant_id"], ids["branch_id"]
        with session_scope(factory) as session:
            services = [
                branches.create_service(session, tenant, branch, code, name).id
                for code, name in (("B", "Benefits"), ("C", "Cards"))
            ]
            made = [
                branches.create_counter(
                    session, tenant, branch, number, f"Counter {number}", services
                ).id
                for number in range(1, counters + 1)
            ]
    finally:
        engine.dispose()
    return Branch(
        str(tenant), str(branch), tuple(str(s) for s in services), tuple(str(c) for c in made)
    )


@dataclass(frozen=True)
class LoggedEvent:
    """One row of the service's event log."""

    id: str
    device_id: str | None
    device_seq: int | None
    server_seq: int | None
    type: str
    status: str


def server_events(database_url: str, branch_id: str) -> list[LoggedEvent]:
    """Every event the service stored for the branch, accepted or rejected."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            query = select(
                QueueEvent.id,
                QueueEvent.device_id,
                QueueEvent.device_seq,
                QueueEvent.server_seq,
                QueueEvent.type,
                QueueEvent.status,
            ).where(QueueEvent.branch_id == uuid.UUID(branch_id))
            return [
                LoggedEvent(
                    str(r.id),
                    str(r.device_id) if r.device_id else None,
                    r.device_seq,
                    r.server_seq,
                    r.type,
                    r.status,
                )
                for r in conn.execute(query)
            ]
    finally:
        engine.dispose()


class ServerProcess:
    """``queuedesk-server serve`` on ``database_url`` and a fixed port, restartable."""

    def __init__(
        self,
        database_url: str,
        log_dir: Path,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.port = port or free_port()
        self.log = log_dir / f"server-{self.port}.log"
        self._env = {**(os.environ if env is None else env), "QUEUEDESK_DATABASE_URL": database_url}
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start (again) on the same port; returns once ``/readyz`` answers 200."""
        if self.running:
            raise RuntimeError("the server is already running")
        command = [sys.executable, "-m", "server", "serve", "--port", str(self.port)]
        command += ["--log-level", "warning"]
        if self.starts:
            command.append("--no-migrate")  # migrated by the first start
        with self.log.open("ab") as output:
            self._process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=self._env
            )
        self.starts += 1
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with httpx.Client(base_url=self.base_url, timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {process.returncode}:\n{self.log.read_text()}"
                    )
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)  # polling a condition with a deadline
        raise RuntimeError(f"server not ready after {STARTUP_TIMEOUT_S} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL if it hangs). Idempotent."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, open transactions lost. Idempotent."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._process = None

    def pause(self) -> None:
        """SIGSTOP: the port stays open, requests hang until the client times out."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
