"""SyncApi's retries and error mapping against a small scripted HTTP app on 127.0.0.1.

The real server rarely answers 401 to a fresh token, 503 or 500, or stalls a
stream; this Starlette app under uvicorn (in a thread) answers what each test
scripts, over real HTTP, so the client's handling of those answers is exercised
end to end. The happy paths run against the real server in test_sync_api_live.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sync.client.api import (
    Heartbeat,
    Offline,
    Poke,
    Rejected,
    ServerError,
    SignedOut,
    SyncApi,
    Throttled,
    TlsFailure,
)
from sync.client.auth import AuthSession
from sync.client.backoff import Backoff
from sync.client.credentials import MemoryCredentialStore
from sync.protocol import DEVICE_HEADER, PushRequest, StreamMessage
from tests.server.live import free_port

pytestmark = pytest.mark.asyncio
BRANCH, DEVICE = uuid.uuid4(), uuid.uuid4()
OK_BODIES: dict[str, dict[str, Any]] = {
    "/api/v1/sync/push": {"results": [], "last_device_seq": 0, "server_seq": 0},
    "/api/v1/sync/pull": {"events": [], "cursor": 0, "has_more": False, "last_device_seq": 0},
    "/api/v1/sync/leases": {"leases": []},
}
PROBLEM = "application/problem+json"


@dataclass
class Script:
    """What the app answers next, and what it was asked."""

    replies: list[Response] = field(default_factory=list)
    seen: list[Request] = field(default_factory=list)
    stream_stalls: bool = False


def make_app(script: Script) -> Starlette:
    async def sync_call(request: Request) -> Response:
        script.seen.append(request)
        if script.replies:
            return script.replies.pop(0)
        if request.headers.get("authorization") != "Bearer fresh":
            return JSONResponse({"detail": "Token expired."}, 401, media_type=PROBLEM)
        return JSONResponse(OK_BODIES[request.url.path])

    async def stream(request: Request) -> Response:
        script.seen.append(request)
        if request.headers.get("authorization") != "Bearer fresh":
            return JSONResponse({"detail": "Token expired."}, 401, media_type=PROBLEM)

        async def messages() -> AsyncIterator[str]:
            yield "event: heartbeat\ndata: {}\n\n"
            if script.stream_stalls:
                await asyncio.sleep(60)  # never beats again
            message = StreamMessage(events=[], cursor=7).model_dump_json()
            yield f"event: events\ndata: {message}\nid: 7\n\n"
            yield ": a comment\n\nevent: something-new\ndata: x\n\n"
            yield "event: poke\ndata: \n\n"
            yield 'event: heartbeat\ndata: {"events": [], "cursor": 7}\n\n'

        return StreamingResponse(messages(), media_type="text/event-stream")

    routes = [Route(path, sync_call, methods=["GET", "POST"]) for path in OK_BODIES]
    return Starlette(routes=[*routes, Route("/api/v1/sync/stream", stream)])


@contextmanager
def running(app: Starlette, tmp_path: Path | None = None) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (over TLS with a self-signed certificate if ``tmp_path``)."""
    port = free_port()
    tls: dict[str, Any] = {}
    if tmp_path is not None:
        tls = dict(zip(("ssl_certfile", "ssl_keyfile"), self_signed(tmp_path), strict=True))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none",
        http="h11", timeout_graceful_shutdown=1, **tls,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # a condition with a deadline, not a fixed wait
        assert thread.is_alive(), "the test app exited"
        assert time.monotonic() < deadline, "the test app did not start"
        time.sleep(0.01)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def self_signed(directory: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


class Tokens:
    """The session as SyncApi sees it: a token, and a refresh that counts itself."""

    def __init__(self, current: str = "stale") -> None:
        self.current, self.refreshes = current, 0

    async def access_token(self) -> str:
        return self.current

    async def refresh(self, stale_access: str | None = None) -> str:
        if stale_access is None or stale_access == self.current:
            self.refreshes += 1
            self.current = "fresh"
        return self.current


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def base_url(script: Script) -> Iterator[str]:
    with running(make_app(script)) as url:
        yield url


@dataclass
class Rig:
    api: SyncApi
    tokens: Tokens
    sleeps: Sleeps


@pytest_asyncio.fixture
async def rig(base_url: str) -> AsyncIterator[Rig]:
    tokens, sleeps = Tokens(), Sleeps()
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=10) as client:
        backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(5))
        api = SyncApi(client, tokens, backoff=backoff, sleep=sleeps, stream_read_timeout=0.5)
        yield Rig(api, tokens, sleeps)


def push() -> PushRequest:
    return PushRequest(branch_id=BRANCH, device_id=DEVICE, events=[])


def problem(status: int, detail: str, **extra: Any) -> Response:
    headers = extra.pop("headers", None)
    body = {"type": "about:blank", "title": "x", "status": status, "detail": detail, **extra}
    return JSONResponse(body, status, headers=headers, media_type=PROBLEM)


async def test_a_401_is_retried_once_with_a_refreshed_token(rig: Rig, script: Script) -> None:
    await rig.api.push(push())

    assert rig.tokens.refreshes == 1
    auth = [r.headers["authorization"] for r in script.seen]
    assert auth == ["Bearer stale", "Bearer fresh"]
    assert {r.headers[DEVICE_HEADER] for r in script.seen} == {str(DEVICE)}


async def test_a_401_after_the_refresh_is_signed_out(rig: Rig, script: Script) -> None:
    script.replies += [problem(401, "Token revoked."), problem(401, "Token revoked.")]
    with pytest.raises(SignedOut, match="Token revoked"):
        await rig.api.pull(BRANCH, 0, device_id=DEVICE)
    assert rig.tokens.refreshes == 1
    assert len(script.seen) == 2


async def test_pull_sends_its_parameters(rig: Rig, script: Script) -> None:
    rig.tokens.current = "fresh"
    await rig.api.pull(BRANCH, 41, device_id=DEVICE, limit=50, ref_version="v9")
    assert dict(script.seen[0].query_params) == {
        "branch_id": str(BRANCH),
        "after": "41",
        "limit": "50",
        "device_id": str(DEVICE),
        "ref_version": "v9",
    }


async def test_unavailable_is_retried_with_jittered_backoff(rig: Rig, script: Script) -> None:
    rig.tokens.current = "fresh"
    script.replies += [Response(status_code=503), Response(status_code=502)]

    await rig.api.push(push())

    reference = random.Random(5)
    assert rig.sleeps == [reference.uniform(0, 1.0), reference.uniform(0, 2.0)]
    assert len(script.seen) == 3


async def test_unavailable_every_time_is_offline(rig: Rig, script: Script) -> None:
    rig.tokens.current = "fresh"
    script.replies += [Response(status_code=504)] * 3
    with pytest.raises(Offline, match="is unavailable \\(504\\)"):
        await rig.api.push(push())
    assert len(script.seen) == 3
    assert len(rig.sleeps) == 2


@pytest.mark.parametrize(
    ("reply", "error", "fields"),
    [
        (problem(429, "Slow down.", headers={"Retry-After": "7"}), Throttled, {"retry_after": 7}),
        (problem(422, "Event 0 has no id."), Rejected, {"status": 422}),
        (problem(409, "Device of another branch."), Rejected, {"status": 409}),
        (problem(500, "Internal error."), ServerError, {"status": 500}),
        (Response("<html>oops</html>", 403), Rejected, {"status": 403}),
        (JSONResponse({"unexpected": True}), ServerError, {"status": 200}),
    ],
    ids=["429", "422", "409-without-seq", "500", "403-not-json", "200-unreadable"],
)
async def test_answers_map_to_errors_without_retrying(
    rig: Rig, script: Script, reply: Response, error: type[Exception], fields: dict[str, Any]
) -> None:
    rig.tokens.current = "fresh"
    script.replies.append(reply)
    with pytest.raises(error) as raised:
        await rig.api.push(push())
    assert {name: getattr(raised.value, name) for name in fields} == fields
    assert len(script.seen) == 1
    assert rig.sleeps == []


async def test_the_throttle_message_says_how_long(rig: Rig, script: Script) -> None:
    rig.tokens.current = "fresh"
    script.replies.append(problem(429, "Too many requests.", headers={"Retry-After": "7"}))
    with pytest.raises(Throttled, match=r"^Too many requests \(about 7 s\)\.$"):
        await rig.api.push(push())


async def test_the_stream_yields_messages_and_markers(rig: Rig, script: Script) -> None:
    items = [item async for item in rig.api.stream(BRANCH, 3, device_id=DEVICE)]

    assert items == [
        Heartbeat(),
        StreamMessage(events=[], cursor=7),
        Poke(),
        Heartbeat(cursor=7),
    ]
    assert rig.tokens.refreshes == 1  # the first connect got a 401
    assert script.seen[-1].query_params["after"] == "3"
    assert script.seen[-1].headers["accept"] == "text/event-stream"


async def test_a_stalled_stream_is_offline(rig: Rig, script: Script) -> None:
    rig.tokens.current, script.stream_stalls = "fresh", True
    items: list[object] = []

    async def read() -> None:
        async for item in rig.api.stream(BRANCH, 0, device_id=DEVICE):
            items.append(item)

    with pytest.raises(Offline, match="did not answer in time"):
        await read()
    assert items == [Heartbeat()]


async def test_a_closed_port_is_offline_after_the_retries() -> None:
    sleeps = Sleeps()
    url = f"http://127.0.0.1:{free_port()}"
    async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
        api = SyncApi(client, Tokens("fresh"), sleep=sleeps)
        with pytest.raises(Offline, match=r"Cannot reach the QueueDesk server at 127\.0\.0\.1"):
            await api.push(push())
    assert len(sleeps) == 2


async def test_an_untrusted_certificate_is_a_tls_failure(tmp_path: Path, script: Script) -> None:
    sleeps = Sleeps()
    with running(make_app(script), tmp_path) as url:
        async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
            api = SyncApi(client, Tokens("fresh"), sleep=sleeps)
            with pytest.raises(
                TlsFailure, match=r"secure connection to 127\.0\.0\.1 failed"
            ) as tls:
                await api.push(push())
    assert "certificate" in str(tls.value)
    assert sleeps == []  # waiting does not fix a certificate
    assert script.seen == []


async def test_signing_in_to_an_untrusted_certificate_says_so(
    tmp_path: Path, script: Script
) -> None:
    with running(make_app(script), tmp_path) as url:
        async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
            session = AuthSession(client, MemoryCredentialStore(), sleep=Sleeps())
            with pytest.raises(TlsFailure, match="certificate") as tls:
                await session.login("acme", "admin", "pw")
    assert str(tls.value).startswith("The secure connection to 127.0.0.1 failed (")
