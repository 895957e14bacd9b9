"""The FastAPI application of the central service: routes, error handling, ops endpoints.

:func:`create_app` builds one application per configuration. The database
engine lives from startup to shutdown (the lifespan); the signing key ring is
loaded on first use, so ``/healthz`` and ``/readyz`` answer even while the
database is still down or unmigrated.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.events import build_validators
from server.api import (
    api_keys,
    audit_log,
    auth,
    branch_counters,
    branch_services,
    branches,
    counter_actions,
    reports,
    roles,
    sync,
    sync_stream,
    tickets,
    users,
)
from server.api.problems import PROBLEM_RESPONSES, Problem, install, problem_response
from server.config import Settings, get_settings
from server.db import (
    make_engine,
    make_session_factory,
    parse_database_url,
    wal_checkpointer,
    write_queue,
)
from server.migrate import current_revision, head_revision
from server.request_gate import RequestGate, in_flight_limit
from server.services.keys import KeyRingSource
from server.services.kpi_facts import keep_facts_current
from server.services.sync_hub import running_hub

API_PREFIX: Final = "/api/v1"
# Every router of the public API, mounted under API_PREFIX.
ROUTERS: Final[tuple[APIRouter, ...]] = (
    auth.router,
    tickets.router,
    counter_actions.router,
    branches.router,
    branch_services.router,
    branch_counters.router,
    users.router,
    roles.router,
    api_keys.router,
    audit_log.router,
    sync.router,
    sync_stream.router,
    reports.router,
)
# Long-lived requests that must not hold a request-gate slot while they wait.
GATE_EXEMPT: Final = frozenset({API_PREFIX + sync_stream.STREAM_PATH})
# A database at head stays at head; checking again this often is plenty.
REVISION_CHECK_TTL_S: Final = 60.0
JWKS_MAX_AGE_S: Final = 60


class Metrics:
    """Request counts and latencies by route template, in a registry of their own.

    A registry per application, not the process-wide default: tests build many
    applications in one process, and each must count only its own requests.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "queuedesk_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "queuedesk_http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """The matched route's template ("/api/v1/tickets/{id}") or "unmatched".

    Never the raw path: one series per route, not one per id or per probe of a
    scanner. An included router's route knows only its own path, so the API
    prefix it was mounted under is put back.
    """
    template = getattr(scope.get("route"), "path_format", None)
    if not isinstance(template, str):
        return "unmatched"
    path = scope.get("path", "")
    if path.startswith(API_PREFIX + "/") and not template.startswith(API_PREFIX + "/"):
        return API_PREFIX + template
    return template


class MetricsMiddleware:
    """Plain ASGI middleware (it must not buffer streamed responses)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = route_template(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


class Readiness:
    """Whether the database answers and its schema is at this build's head."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.database_url
        self._head = head_revision()
        self._lock = threading.Lock()
        self._at_head_until = 0.0

    def check(self, engine: Engine) -> str | None:
        """None when ready, else why not (for operators; no secrets)."""
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return "database unreachable"
        with self._lock:
            if time.monotonic() < self._at_head_until:
                return None
        try:
            revision = current_revision(self._url)
        except SQLAlchemyError:
            return "database unreachable"
        if revision != self._head:
            return f"database schema at {revision or 'nothing'}, this build needs {self._head}"
        with self._lock:
            self._at_head_until = time.monotonic() + REVISION_CHECK_TTL_S
        return None


async def _internal_error(_request: Request, _exc: Exception) -> JSONResponse:
    # The exception itself is logged by the server; the client learns nothing of it.
    return problem_response(Problem(500, "An unexpected error occurred."))


def _ops_routes(app: FastAPI, metrics: Metrics, readiness: Readiness) -> None:
    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The process is up (says nothing about the database)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], response_model=None)
    def readyz(request: Request) -> dict[str, str] | JSONResponse:
        """Ready for traffic: the database answers and is migrated to head."""
        reason = readiness.check(request.app.state.engine)
        if reason is not None:
            return problem_response(Problem(503, reason, slug="not-ready"))
        return {"status": "ready"}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def prometheus_metrics() -> PlainTextResponse:
        """Prometheus text exposition."""
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/.well-known/jwks.json", tags=["auth"])
    def jwks(request: Request) -> JSONResponse:
        """The public keys that verify access tokens."""
        keys: KeyRingSource = request.app.state.keys
        return JSONResponse(
            keys.ring().jwks(), headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_S}"}
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The central service's application for ``settings`` (default: the environment)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        build_validators()  # at startup, not in the first request that parses an event
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            background_checkpoints=True,
        )
        checkpointer = wal_checkpointer(engine)
        if checkpointer is not None:
            checkpointer.start()
        app.state.engine = engine
        app.state.session_factory = make_session_factory(engine)
        app.state.write_queue = write_queue(engine)
        app.state.keys = KeyRingSource(app.state.session_factory)
        app.state.read_session_factory = make_session_factory(engine, read_only=True)
        stop_facts = threading.Event()
        facts = None
        if settings.kpi_facts_interval_s > 0:
            facts = asyncio.create_task(
                keep_facts_current(
                    app.state.session_factory,
                    settings.kpi_facts_interval_s,
                    stop_facts,
                    app.state.write_queue,
                )
            )
        try:
            async with running_hub(app.state.session_factory, engine.url) as hub:
                app.state.sync_hub = hub
                yield
        finally:
            stop_facts.set()
            if facts is not None:
                facts.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await facts
            reads = getattr(app.state, "sync_shared_reads", None)
            if reads is not None:
                await reads.drain()
            engine.dispose()
            if checkpointer is not None:
                checkpointer.stop()

    app = FastAPI(title="QueueDesk", lifespan=lifespan)
    app.state.settings = settings
    install(app)
    app.add_exception_handler(Exception, _internal_error)
    metrics = Metrics()
    app.state.metrics = metrics
    backend = parse_database_url(settings.database_url).get_backend_name()
    limit = in_flight_limit(backend, settings.db_pool_size, settings.db_max_overflow)
    app.add_middleware(RequestGate, limit=limit, exempt=GATE_EXEMPT)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _ops_routes(app, metrics, Readiness(settings))
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    return app
