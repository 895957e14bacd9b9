"""The central service's sync endpoints over HTTP, and the errors any call to it can raise.

:class:`SyncApi` is push, pull, leases and the live stream (DESIGN "Sync"), typed
with the wire schemas of :mod:`sync.protocol`. Each failure is one
:class:`ClientError` subclass whose ``str()`` is a sentence for staff, chosen so
the sync engine knows what to do next without reading status codes:

- :class:`Offline`: no answer, a timeout or 502/503/504; keep working, retry later;
- :class:`SeqGap`: the server expects another ``device_seq``; resend from there;
- :class:`Throttled`: wait ``retry_after``; :class:`SignedOut`: ask to sign in;
- :class:`Rejected` (other 4xx) and :class:`ServerError` (other 5xx).

Push is idempotent by event id, pull and stream are reads, and a repeated lease
request at worst leases a block early, so calls that get no answer are retried
here, with :class:`~sync.client.backoff.Backoff`, before :class:`Offline` surfaces.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Protocol, TypeVar

import httpx
from httpx_sse import SSEError, aconnect_sse
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from sync.client.backoff import Backoff
from sync.protocol import (
    DEFAULT_PULL_LIMIT,
    DEVICE_HEADER,
    HEARTBEAT_S,
    LeaseRequest,
    LeaseResponse,
    PullResponse,
    PushRequest,
    PushResponse,
    StreamMessage,
)

SYNC_PATH: Final = "/api/v1/sync"
_Model = TypeVar("_Model", bound=BaseModel)

# -- errors ---------------------------------------------------------------------------


class ClientError(Exception):
    """A call to the central service failed; ``str()`` says why, for staff."""


class Offline(ClientError):  # noqa: N818 - names the state the console is in
    """The server cannot be reached (connection, timeout, 502/503/504): retry later."""


class TlsFailure(Offline):
    """The TLS handshake failed, usually an untrusted or mismatched certificate.

    The server is out of reach as with any :class:`Offline`, but waiting will not
    help, so it is never retried and its message points at the address and certificate.
    """


class SignedOut(ClientError):  # noqa: N818
    """There is no usable session: sign in again (a refresh token or token was refused)."""


class Throttled(ClientError):  # noqa: N818
    """The server asks to wait ``retry_after`` seconds (None: it did not say how long)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Rejected(ClientError):  # noqa: N818
    """The server refused the request (a 4xx problem): retrying it unchanged won't help."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class SeqGap(Rejected):
    """A push did not start at the device's next ``device_seq``; ``expected`` is that seq."""

    def __init__(self, expected: int, detail: str) -> None:
        super().__init__(409, detail)
        self.expected = expected


class ServerError(ClientError):
    """The server failed (a 5xx other than 502/503/504, or an unreadable answer)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def problem(response: httpx.Response) -> dict[str, Any]:
    """The RFC 9457 problem document of an error response ({} when it is not one)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds: either delta-seconds or an HTTP date."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def response_failure(response: httpx.Response) -> ClientError:
    """The error for a non-2xx response, with the server's ``detail`` when it sent one."""
    status, body = response.status_code, problem(response)
    detail = str(body.get("detail") or f"{response.reason_phrase} ({status})")
    if status in (502, 503, 504):
        host = response.request.url.host
        return Offline(f"The QueueDesk server at {host} is unavailable ({status}); retrying later.")
    if status == 429:
        wait = retry_after(response)
        hint = f" (about {math.ceil(wait)} s)" if wait else ""
        return Throttled(f"{detail.rstrip('.')}{hint}.", wait)
    if status == 401:
        return SignedOut(detail)
    if status == 409 and isinstance(body.get("expected_device_seq"), int):
        return SeqGap(body["expected_device_seq"], detail)
    return ServerError(status, detail) if status >= 500 else Rejected(status, detail)


def transport_failure(exc: httpx.TransportError) -> Offline:
    """The error for a request that got no response at all."""
    try:
        host = exc.request.url.host
    except RuntimeError:  # raised by httpx when the error carries no request
        host = "the server"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            reason = getattr(cause, "verify_message", None) or cause.reason or str(cause)
            return TlsFailure(
                f"The secure connection to {host} failed ({reason}). Check the server "
                "address, or ask your administrator to install its certificate."
            )
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        why = "it did not answer in time"
    elif isinstance(exc, httpx.ConnectError):
        why = "the connection was refused or the address is unknown"
    else:
        why = "the connection broke"
    return Offline(f"Cannot reach the QueueDesk server at {host}: {why}. Working offline.")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, Offline) and not isinstance(exc, TlsFailure)


# -- sync calls -----------------------------------------------------------------------


class TokenSource(Protocol):
    """What :class:`SyncApi` needs of :class:`~sync.client.auth.AuthSession`."""

    async def access_token(self) -> str: ...
    async def refresh(self, stale_access: str | None = None) -> str: ...


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The stream is alive and nothing is new; ``cursor`` is the server's, when it said."""

    cursor: int | None = None


@dataclass(frozen=True, slots=True)
class Poke:
    """Something changed that the stream did not carry: pull from the cursor."""


StreamItem = StreamMessage | Heartbeat | Poke


class SyncApi:
    """Push, pull, leases and the stream over one long-lived ``httpx.AsyncClient``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        session: TokenSource,
        *,
        attempts: int = 3,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        stream_read_timeout: float = 3 * HEARTBEAT_S,
    ) -> None:
        self._client, self._session = client, session
        self._attempts, self._backoff = attempts, backoff or Backoff(base=0.5, cap=8.0)
        self._sleep = sleep
        # Three missed heartbeats end the stream (DESIGN "Sync" 4, sync.protocol).
        self._stream_timeout = httpx.Timeout(10.0, read=stream_read_timeout)

    async def push(self, request: PushRequest) -> PushResponse:
        body = request.model_dump(mode="json")
        response = await self._call("POST", "/push", request.device_id, json=body)
        return _parse(PushResponse, response)

    async def pull(
        self,
        branch_id: uuid.UUID,
        after: int,
        *,
        device_id: uuid.UUID,
        limit: int = DEFAULT_PULL_LIMIT,
        ref_version: str | None = None,
        state: bool = False,
        sent: asyncio.Event | None = None,
    ) -> PullResponse:
        """One page of the branch's log after ``after``.

        ``state`` asks for the branch's state with a first page (see
        :class:`~sync.protocol.BranchStateBody`). ``sent`` is set once the request is
        on the wire (the answer may still be on its way), for a caller that wants
        the service to work while it does.
        """
        params: dict[str, str | int] = {
            "branch_id": str(branch_id),
            "after": after,
            "limit": limit,
            "device_id": str(device_id),
        }
        if ref_version is not None:
            params["ref_version"] = ref_version
        if state:
            params["state"] = "true"
        extensions = None if sent is None else {"trace": _setting_when_sent(sent)}
        response = await self._call("GET", "/pull", device_id, params=params, extensions=extensions)
        return _parse(PullResponse, response)

    async def leases(self, request: LeaseRequest) -> LeaseResponse:
        body = request.model_dump(mode="json")
        response = await self._call("POST", "/leases", request.device_id, json=body)
        return _parse(LeaseResponse, response)

    async def stream(
        self, branch_id: uuid.UUID, after: int, *, device_id: uuid.UUID
    ) -> AsyncIterator[StreamItem]:
        """Live messages until the server ends the stream (then pull and reconnect).

        Raises :class:`Offline` when the connection breaks or three heartbeats are
        missed; unknown event names are skipped so the server can add new ones.
        """
        params = {"branch_id": str(branch_id), "after": after, "device_id": str(device_id)}
        token = await self._session.access_token()
        for last_try in (False, True):
            try:
                async with aconnect_sse(
                    self._client,
                    "GET",
                    f"{SYNC_PATH}/stream",
                    params=params,
                    headers=_headers(token, device_id),
                    timeout=self._stream_timeout,
                ) as source:
                    response = source.response
                    if response.status_code == 401 and not last_try:
                        token = await self._session.refresh(stale_access=token)
                        continue
                    if not response.is_success:
                        await response.aread()
                        raise response_failure(response)
                    async for sse in source.aiter_sse():
                        if sse.event == "events":
                            yield _parse_text(StreamMessage, sse.data)
                        elif sse.event in ("heartbeat", "ping"):
                            yield _heartbeat(sse.data)
                        elif sse.event == "poke":
                            yield Poke()
                    return
            except httpx.TransportError as exc:
                raise transport_failure(exc) from exc
            except SSEError as exc:
                raise ServerError(
                    200, f"The server's live stream is not readable ({exc})."
                ) from exc

    async def _call(
        self, method: str, path: str, device_id: uuid.UUID, **kwargs: Any
    ) -> httpx.Response:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._backoff,
            retry=retry_if_exception(_retryable),
            sleep=self._sleep,
            reraise=True,
        ):
            with attempt:
                return await self._authorized(method, SYNC_PATH + path, device_id, **kwargs)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    async def _authorized(
        self, method: str, url: str, device_id: uuid.UUID, **kwargs: Any
    ) -> httpx.Response:
        """One request, and once more with a refreshed token if the first got a 401."""
        token = await self._session.access_token()
        response = await self._send(method, url, _headers(token, device_id), **kwargs)
        if response.status_code == 401:
            token = await self._session.refresh(stale_access=token)
            response = await self._send(method, url, _headers(token, device_id), **kwargs)
        if not response.is_success:
            raise response_failure(response)
        return response

    async def _send(
        self, method: str, url: str, headers: dict[str, str], **kwargs: Any
    ) -> httpx.Response:
        try:
            return await self._client.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise transport_failure(exc) from exc


def _setting_when_sent(sent: asyncio.Event) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """An httpcore ``trace`` hook that sets ``sent`` when a request's body was sent."""

    async def trace(name: str, info: dict[str, Any]) -> None:
        if name.endswith(".send_request_body.complete"):
            sent.set()

    return trace


def _headers(token: str, device_id: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", DEVICE_HEADER: str(device_id)}


def _heartbeat(data: str) -> Heartbeat:
    # The server sends an empty StreamMessage; an older or other one may send nothing.
    try:
        return Heartbeat(StreamMessage.model_validate_json(data).cursor)
    except ValidationError:
        return Heartbeat()


def _parse(model: type[_Model], response: httpx.Response) -> _Model:
    # The bytes as they came: JSON is UTF-8, and decoding a page of thousands of
    # events to a str first only for the parser to read it back costs a copy.
    return _parse_text(model, response.content)


def _parse_text(model: type[_Model], text: str | bytes) -> _Model:
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        name = model.__name__
        raise ServerError(200, f"The server's answer is not a valid {name}: {exc}") from exc
