"""Typed dependencies of the API routes: the request's session, the caller, permission checks.

The caller is authenticated by an access token (``Authorization: Bearer <JWT>``)
or an API key (``Authorization: Bearer qd_...`` or ``X-API-Key: qd_...``). The
tenant always comes from the verified token or the stored key, never from the
request. Every refusal of credentials is the same 401, so a caller cannot learn
which part was wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, TypeVar

import jwt
from fastapi import Depends, Request, Response
from pydantic import BaseModel
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from server.api.problems import Problem
from server.config import Settings
from server.db import DriverQuery, SQLiteWriteQueue, session_scope
from server.models import ApiKey, RevokedToken, Tenant, User
from server.security.api_keys import API_KEY_PREFIX, ApiKeyFormatError, parse_api_key
from server.security.signing_keys import KeyRing
from server.security.tokens import Reason, TokenError
from server.services import audit
from server.services.keys import KeyRingSource
from server.services.rbac import Grants, grant_cache

# last_used_at is for people reviewing keys; a write per request would not help them.
LAST_USED_PRECISION: Final = timedelta(minutes=1)
_UNAUTHENTICATED: Final = (
    "Authentication required: the credentials are missing, invalid or expired."
)
_MAX_USER_AGENT: Final = 512


def get_session(request: Request) -> Iterator[Session]:
    """One session per request: committed when the route succeeds, rolled back on error."""
    with session_scope(request.app.state.session_factory) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a client
# that got an answer can rely on what it reported having been stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


# The two below only read app.state: async, so FastAPI calls them in the event
# loop instead of handing each to a worker thread and back.
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_keys(request: Request) -> KeyRingSource:
    keys: KeyRingSource = request.app.state.keys
    return keys


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
KeysDep = Annotated[KeyRingSource, Depends(get_keys)]


def client_ip(request: Request) -> str | None:
    """The peer address of the connection (proxy headers are honoured only by the server)."""
    return request.client.host if request.client else None


def user_agent(request: Request) -> str | None:
    """The User-Agent header, cut to what the audit log stores."""
    value = request.headers.get("user-agent")
    return value[:_MAX_USER_AGENT] if value else None


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
    actor_type: Literal["user", "api_key"]
    grants: Grants
    jti: str | None = None
    expires_at: datetime | None = None
    device_id: uuid.UUID | None = None  # the access token's "did" claim, if any

    @property
    def actor_id(self) -> str:
        """The id the audit log names the caller by."""
        return str(self.api_key_id if self.actor_type == "api_key" else self.user_id)

    def actor(self, request: Request) -> audit.Actor:
        """The caller as an audit actor, with the request's address and agent."""
        return audit.Actor(self.actor_type, self.actor_id, client_ip(request), user_agent(request))


def unauthenticated() -> Problem:
    """The one 401 for every credential failure."""
    return Problem(
        401, _UNAUTHENTICATED, slug="unauthenticated", headers={"WWW-Authenticate": "Bearer"}
    )


def _as_uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise unauthenticated() from None


def _active_user(session: Session, tenant_id: uuid.UUID, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    if user is None or user.tenant_id != tenant_id or user.disabled:
        raise unauthenticated()
    tenant = session.get(Tenant, tenant_id)
    if tenant is None or tenant.disabled:
        raise unauthenticated()
    return user


# Everything a bearer token's validity depends on, in one round trip: this runs
# on every request, so it reads two values rather than three ORM entities.
_USERS, _TENANTS, _REVOKED = User.__table__, Tenant.__table__, RevokedToken.__table__
_TOKEN_HOLDER: Final = DriverQuery(
    select(
        _USERS.c.token_version,
        select(_REVOKED.c.jti).where(_REVOKED.c.jti == bindparam("jti")).exists(),
    )
    .select_from(_USERS.join(_TENANTS, _TENANTS.c.id == _USERS.c.tenant_id))
    .where(
        _USERS.c.id == bindparam("user_id"),
        _USERS.c.tenant_id == bindparam("tenant_id"),
        _USERS.c.disabled.is_(False),
        _TENANTS.c.disabled.is_(False),
    )
)


def _token_version(session: Session, tenant_id: uuid.UUID, user_id: uuid.UUID, jti: str) -> int:
    """The active user's token version; 401 for an unknown or disabled user or tenant,
    or a revoked token."""
    params = {"user_id": user_id, "tenant_id": tenant_id, "jti": jti}
    found = _TOKEN_HOLDER.first(session.connection(), params)
    if found is None or found[1]:
        raise unauthenticated()
    return int(found[0])


def _verify(keys: KeyRingSource, settings: Settings, token: str) -> dict[str, Any]:
    """The token's claims; revocation is checked with the holder (:func:`_token_version`)."""

    def attempt(ring: KeyRing) -> dict[str, Any]:
        return keys.verified.verify(ring, token, issuer=settings.jwt_issuer)

    try:
        return attempt(keys.ring())
    except TokenError as exc:
        if exc.reason is not Reason.UNKNOWN_KEY:
            raise unauthenticated() from None
    # The kid may come from a key rotated in since this process loaded the ring.
    kid = _unverified_kid(token)
    ring = keys.reload_for(kid) if kid else None
    if ring is None:
        raise unauthenticated()
    try:
        return attempt(ring)
    except TokenError:
        raise unauthenticated() from None


def _unverified_kid(token: str) -> str | None:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    return kid if isinstance(kid, str) and kid else None


def _from_access_token(
    session: Session,
    keys: KeyRingSource,
    settings: Settings,
    token: str,
    claims: dict[str, Any] | None = None,
) -> Principal:
    """The caller of a bearer token; ``claims`` when its signature was verified already."""
    if claims is None:
        claims = _verify(keys, settings, token)
    tenant_id, user_id = _as_uuid(claims["tid"]), _as_uuid(claims["sub"])
    version = claims.get("ver")
    # A disabled account or a changed password bumps token_version: older tokens end.
    holder_version = _token_version(session, tenant_id, user_id, str(claims["jti"]))
    if isinstance(version, bool) or version != holder_version:
        raise unauthenticated()
    return Principal(
        tenant_id=tenant_id,
        user_id=user_id,
        api_key_id=None,
        actor_type="user",
        grants=grant_cache.get(session, tenant_id, user_id),
        jti=claims["jti"],
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        device_id=_as_uuid(claims["did"]) if claims.get("did") is not None else None,
    )


def _from_api_key(session: Session, presented: str) -> Principal:
    try:
        parsed = parse_api_key(presented)  # text only: garbage never reaches the database
    except ApiKeyFormatError:
        raise unauthenticated() from None
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == parsed.key_hash))
    now = datetime.now(UTC)
    if key is None or key.revoked_at is not None:
        raise unauthenticated()
    if key.expires_at is not None and key.expires_at <= now:
        raise unauthenticated()
    _active_user(session, key.tenant_id, key.user_id)
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_PRECISION:
        key.last_used_at = now
    owner = grant_cache.get(session, key.tenant_id, key.user_id)
    return Principal(
        tenant_id=key.tenant_id,
        user_id=key.user_id,
        api_key_id=key.id,
        actor_type="api_key",
        grants=owner.narrowed(frozenset(key.scopes or ())),
    )


def _credentials(request: Request) -> tuple[Literal["jwt", "api_key"], str]:
    """("jwt" | "api_key", credential) from the request headers; 401 when absent or mixed."""
    authorization = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    if authorization is not None and api_key is not None:
        raise unauthenticated()  # two credentials: refuse rather than pick one
    if api_key is not None:
        return "api_key", api_key.strip()
    if authorization is None:
        raise unauthenticated()
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise unauthenticated()
    return ("api_key" if value.startswith(API_KEY_PREFIX) else "jwt"), value


def get_principal(
    request: Request, session: SessionDep, keys: KeysDep, settings: SettingsDep
) -> Principal:
    """The authenticated caller; a 401 problem otherwise."""
    kind, credential = _credentials(request)
    if kind == "api_key":
        return _from_api_key(session, credential)
    return _from_access_token(session, keys, settings, credential)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


# --- one call per request -----------------------------------------------------
#
# With SessionDep and PrincipalDep, FastAPI hands the session's start, the
# principal, the route and the session's end to the thread pool one after the
# other: four thread hops, each costing about as much as the database work of a
# simple route. The busiest routes (tickets and counters) take a Caller instead,
# checked in the event loop as far as that needs no database, and do the rest,
# from the session to the commit, in one call of :func:`run_as`.
#
# On SQLite that call is a turn of the file's one writer (SQLiteWriteQueue), and
# the work is the process's own CPU: the database is a file in the page cache,
# and a commit in WAL mode with synchronous=NORMAL does not wait for the disk.
# So the event loop runs the call itself, once its turn has come: the hop to a
# worker thread and back cost more than the call (api_throughput's ticket mix,
# measured alternately: 290-460 requests a second against 195-280). While
# another writer holds the turn, the request waits in line without blocking the
# loop, which goes on serving.
#
# The loop must then never wait for a lock that a thread can hold while that
# thread waits for the turn: the turn may be handed to a request only the loop
# can run. Branch-state mutexes are taken after the turn by writers, and
# readers, which take them without it, never wait for a writer; the key ring's
# reload lock is not taken by the loop (KeyRingSource.fresh_ring); and a
# session's pooled connection is checked out by the turn's holder, with fewer
# writers in flight (RequestGate) than the pool has connections.

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Caller:
    """A request's credentials; a bearer token's signature and claims already verified."""

    kind: Literal["jwt", "api_key"]
    credential: str = field(repr=False)
    claims: dict[str, Any] | None = None


async def get_caller(request: Request) -> Caller:
    """The credentials, or a 401; what only the database can tell is left to :func:`run_as`.

    The key ring and the settings are read from ``app.state`` rather than taken as
    sub-dependencies: each one FastAPI solves costs about 30 us, on every ticket
    and counter request (measured in-process: 190 us for a route with this
    dependency alone, 250 us with the two sub-dependencies as well).
    """
    kind, credential = _credentials(request)
    if kind == "api_key":
        return Caller(kind, credential)
    keys: KeyRingSource = request.app.state.keys
    settings: Settings = request.app.state.settings
    ring = keys.fresh_ring()
    if ring is None:  # the ring is due for a reload: read it where waiting is allowed
        claims = await run_in_threadpool(_verify, keys, settings, credential)
        return Caller(kind, credential, claims)
    try:
        claims = keys.verified.verify(ring, credential, issuer=settings.jwt_issuer)
    except TokenError as exc:
        if exc.reason is not Reason.UNKNOWN_KEY:
            raise unauthenticated() from None
        claims = await run_in_threadpool(_verify, keys, settings, credential)
    return Caller(kind, credential, claims)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def run_as(request: Request, caller: Caller, work: Callable[[Session, Principal], T]) -> T:
    """Authenticate ``caller`` and run ``work`` in one transaction, in one call.

    The transaction commits when ``work`` returns, before the response is sent,
    and rolls back when it raises; the same unit of work as :data:`SessionDep`.
    On PostgreSQL the call runs in a worker thread; on SQLite, in the event loop
    once the writer's turn has come (see above).
    """
    state = request.app.state
    queue: SQLiteWriteQueue | None = state.write_queue

    def run() -> T:
        with session_scope(state.session_factory) as session:
            if caller.kind == "api_key":
                principal = _from_api_key(session, caller.credential)
            else:
                principal = _from_access_token(
                    session, state.keys, state.settings, caller.credential, caller.claims
                )
            return work(session, principal)

    if queue is None:
        return await run_in_threadpool(run)
    await queue.wait_turn()
    try:
        return run()
    finally:
        queue.end_turn()


async def run_as_json(
    request: Request,
    caller: Caller,
    work: Callable[[Session, Principal], BaseModel],
    status_code: int = 200,
) -> Response:
    """:func:`run_as`, answering the model ``work`` returns as JSON.

    The route's ``response_model`` still documents the answer; the model is
    already valid, so it is encoded once here rather than dumped, validated
    again and encoded by FastAPI.
    """
    model = await run_as(request, caller, work)
    return Response(model.model_dump_json(), status_code, media_type="application/json")


def require(permission: str, *, branch_param: str | None = None) -> Callable[..., Principal]:
    """A dependency giving the caller if they hold ``permission``, else a 403 problem.

    With ``branch_param`` the permission is checked at the branch named by that
    path (or query) parameter; a grant at that branch or tenant-wide counts.
    Refusals are written to the audit log and committed before the 403 goes out.
    """

    def dependency(request: Request, principal: PrincipalDep, session: SessionDep) -> Principal:
        branch_id: uuid.UUID | None = None
        if branch_param is not None:
            raw = request.path_params.get(branch_param) or request.query_params.get(branch_param)
            try:
                branch_id = uuid.UUID(str(raw)) if raw else None
            except ValueError:
                branch_id = None  # then only a tenant-wide grant can allow it
        if principal.grants.allows(permission, branch_id):
            return principal
        audit.record_as(
            session,
            principal.actor(request),
            tenant_id=principal.tenant_id,
            action="authz.denied",
            result="denied",
            reason=permission,
            details={
                "method": request.method,
                "path": request.url.path,
                **({"branch_id": str(branch_id)} if branch_id else {}),
            },
        )
        session.commit()
        raise Problem(403, "You are not allowed to do this.", slug="forbidden")

    dependency.__name__ = f"require_{permission.replace('.', '_')}"
    return dependency
