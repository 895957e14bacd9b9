"""The fault proxy against a tiny real HTTP/1.1 server, with httpx and raw sockets as clients.

The origin is :class:`http.server.ThreadingHTTPServer` speaking HTTP/1.1 (so
keep-alive is real) that counts the POSTs it has processed: that counter is how
the tests tell "the request was lost" from "the response was lost". Nothing
here sleeps for a fixed time: waits poll a condition with a deadline, and the
only timing assertion is a lower bound on the injected delay.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.support.faultproxy import FaultProxy

BIG_BODY = 100_000
"""Size of ``GET /big``: far more than any ``keep_bytes`` used below."""
STREAM_PART = 1_000
"""``GET /stream`` sends this many bytes, waits for :attr:`Origin.release`, then as many again."""
TIMEOUT_S = 5.0
"""Client timeout: a proxy that hangs instead of failing makes the test fail, not stall."""

LOST = (httpx.ReadError, httpx.RemoteProtocolError)
"""What httpx raises when the connection dies under a request (RST or early EOF)."""


class Origin(ThreadingHTTPServer):
    """The upstream server: counts POSTs and connections, holds ``/stream`` until released."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.posts = 0
        self.connections = 0
        self.release = threading.Event()

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections reset by the proxy are the point of these tests, not errors."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: Origin

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:  # committed before a single response byte is sent
            self.server.posts += 1
            count = self.server.posts
        self._reply(str(count).encode())

    def do_GET(self) -> None:
        if self.path == "/big":
            self._reply(b"x" * BIG_BODY)
        elif self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Length", str(2 * STREAM_PART))
            self.end_headers()
            self.wfile.write(b"a" * STREAM_PART)
            self.wfile.flush()
            self.server.release.wait(TIMEOUT_S)
            try:
                self.wfile.write(b"b" * STREAM_PART)
            except OSError:
                self.close_connection = True
        else:
            self._reply(b"ok")


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met before the deadline")
        time.sleep(0.01)  # polling a condition with a deadline, not a fixed wait


def recv_until_eof(sock: socket.socket) -> bytes:
    """Read until the peer's FIN; an RST raises ``ConnectionResetError``."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)


@pytest.fixture
def proxy(origin: Origin) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", origin.port) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def client(proxy: FaultProxy) -> Iterator[httpx.Client]:
    # trust_env=False: an HTTP(S)_PROXY in the environment must not reroute 127.0.0.1.
    with httpx.Client(base_url=proxy.url, timeout=TIMEOUT_S, trust_env=False) as http:
        yield http


def test_passes_requests_through_on_one_keep_alive_connection(
    origin: Origin, proxy: FaultProxy, client: httpx.Client
) -> None:
    replies = [client.post("/", content=b"hello").text for _ in range(3)]
    big = client.get("/big")

    assert replies == ["1", "2", "3"]
    assert big.content == b"x" * BIG_BODY
    assert origin.connections == 1
    stats = proxy.stats()
    assert stats.connections_accepted == 1
    assert stats.connections_active == 1
    assert stats.responses == 4
    assert stats.bytes_to_client > BIG_BODY
    assert stats.bytes_to_upstream > 3 * len(b"hello")
    assert (stats.responses_dropped, stats.responses_truncated, stats.connections_reset) == (
        0,
        0,
        0,
    )


def test_closed_client_connection_closes_the_link(proxy: FaultProxy, client: httpx.Client) -> None:
    client.get("/")
    client.close()

    wait_until(lambda: proxy.stats().connections_active == 0)
    assert proxy.stats().connections_reset == 0


def test_drop_loses_the_response_after_the_server_processed_the_request(
    origin: Origin, proxy: FaultProxy, client: httpx.Client
) -> None:
    assert client.post("/", content=b"first").text == "1"

    proxy.drop_responses(1)  # the connection is already pooled: the fault is per response
    with pytest.raises(LOST):
        client.post("/", content=b"second")

    assert origin.posts == 2
    stats = proxy.stats()
    assert (stats.responses_dropped, stats.pending_faults) == (1, 0)
    assert stats.connections_reset == 1
    assert client.post("/", content=b"third").text == "3"


def test_drop_applies_to_the_next_n_responses_on_new_connections_too(
    origin: Origin, proxy: FaultProxy, client: httpx.Client
) -> None:
    proxy.drop_responses(2)

    for _ in range(2):
        with pytest.raises(LOST):
            client.post("/", content=b"x")
    assert client.post("/", content=b"x").text == "3"

    assert origin.posts == 3
    assert proxy.stats().connections_accepted == 3
    assert proxy.stats().responses_dropped == 2


def test_drop_sends_no_response_byte_and_resets(origin: Origin, proxy: FaultProxy) -> None:
    proxy.drop_responses(1)

    with socket.create_connection(proxy.address, timeout=TIMEOUT_S) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        with pytest.raises(ConnectionResetError):
            sock.recv(65536)

    assert origin.posts == 1
    assert proxy.stats().bytes_to_client == 0


def test_truncate_forwards_exactly_keep_bytes_then_fin(proxy: FaultProxy) -> None:
    proxy.truncate_responses(1, keep_bytes=10)

    with socket.create_connection(proxy.address, timeout=TIMEOUT_S) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        received = recv_until_eof(sock)

    assert received == b"HTTP/1.1 2"
    assert proxy.stats().responses_truncated == 1


def test_truncate_mid_body_is_a_client_error_once(proxy: FaultProxy, client: httpx.Client) -> None:
    client.get("/")  # pool a connection first: truncation must hit it on the next response
    before = proxy.stats().bytes_to_client
    proxy.truncate_responses(1, keep_bytes=1_000)

    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/big")

    assert proxy.stats().bytes_to_client - before == 1_000
    assert client.get("/big").content == b"x" * BIG_BODY
    assert proxy.stats().pending_faults == 0


def test_response_faults_are_consumed_in_the_order_armed(
    origin: Origin, proxy: FaultProxy, client: httpx.Client
) -> None:
    proxy.truncate_responses(1, keep_bytes=0)
    proxy.drop_responses(1)
    assert proxy.stats().pending_faults == 2

    with pytest.raises(httpx.RemoteProtocolError):  # FIN before any byte
        client.post("/", content=b"x")
    assert proxy.stats().responses_truncated == 1
    with pytest.raises(LOST):
        client.post("/", content=b"x")
    assert proxy.stats().responses_dropped == 1
    assert origin.posts == 2


def test_cut_refuses_and_resets_then_heal_restores(
    origin: Origin, proxy: FaultProxy, client: httpx.Client
) -> None:
    assert client.post("/", content=b"x").text == "1"
    port = proxy.port
    with socket.create_connection(proxy.address, timeout=TIMEOUT_S) as open_link:
        wait_until(lambda: proxy.stats().connections_active == 2)

        proxy.cut()

        assert proxy.is_cut
        with pytest.raises(ConnectionResetError):
            open_link.recv(1)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(proxy.address):
        pass
    with (
        httpx.Client(base_url=proxy.url, timeout=TIMEOUT_S, trust_env=False) as fresh,
        pytest.raises(httpx.ConnectError),
    ):
        fresh.post("/", content=b"x")
    assert proxy.stats().connections_active == 0
    assert proxy.stats().connections_reset == 2

    proxy.heal()

    assert not proxy.is_cut
    assert proxy.port == port
    assert client.post("/", content=b"x").text == "2"
    assert origin.posts == 2


def test_delay_adds_latency_per_chunk_both_ways(proxy: FaultProxy, client: httpx.Client) -> None:
    delay_s = 0.2
    client.post("/", content=b"warm")  # connection set up outside the measurement

    proxy.delay(delay_s)
    started = time.perf_counter()
    reply = client.post("/", content=b"x")
    elapsed = time.perf_counter() - started

    assert reply.status_code == 200
    # At least one request chunk and one response chunk, each delayed. The 1 ms slack
    # absorbs asyncio firing a timer up to its clock resolution early.
    assert elapsed >= 2 * delay_s - 0.001


def test_reset_connections_breaks_an_in_flight_stream(
    origin: Origin, proxy: FaultProxy, client: httpx.Client
) -> None:
    with client.stream("GET", "/stream") as response:
        chunks = response.iter_raw()
        assert set(next(chunks)) == {ord("a")}

        assert proxy.reset_connections() == 1

        with pytest.raises(LOST):
            for _ in chunks:
                pass
    origin.release.set()

    assert proxy.stats().connections_reset == 1
    wait_until(lambda: proxy.stats().connections_active == 0)
    assert client.get("/").text == "ok"  # new connections are still accepted


def test_unreachable_upstream_resets_the_client() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]
    with (
        FaultProxy("127.0.0.1", dead_port) as proxy,
        httpx.Client(base_url=proxy.url, timeout=TIMEOUT_S, trust_env=False) as http,
    ):
        # The RST may land before, while or after httpx writes the request.
        with pytest.raises((*LOST, httpx.ConnectError, httpx.WriteError)):
            http.get("/")
        assert proxy.stats().upstream_failures == 1
        assert proxy.stats().connections_active == 0


def test_clear_faults_restores_a_clean_link(
    origin: Origin, proxy: FaultProxy, client: httpx.Client
) -> None:
    proxy.delay(0.5)
    proxy.drop_responses(3)
    proxy.cut()

    proxy.clear_faults()

    assert client.post("/", content=b"x").text == "1"
    assert proxy.stats().pending_faults == 0
    assert not proxy.is_cut


def test_faults_can_be_armed_from_another_thread(
    origin: Origin, proxy: FaultProxy, client: httpx.Client
) -> None:
    armer = threading.Thread(target=proxy.drop_responses, args=(1,))
    armer.start()
    armer.join()

    with pytest.raises(LOST):
        client.post("/", content=b"x")
    assert origin.posts == 1


def test_stop_closes_the_port_and_ends_the_thread(origin: Origin) -> None:
    proxy = FaultProxy("127.0.0.1", origin.port).start()
    address = proxy.address
    thread_count = threading.active_count()

    proxy.stop()
    proxy.stop()  # idempotent

    assert threading.active_count() == thread_count - 1
    with pytest.raises(ConnectionRefusedError), socket.create_connection(address):
        pass
    with pytest.raises(RuntimeError):
        proxy.cut()


def test_rejects_negative_arguments() -> None:
    proxy = FaultProxy("127.0.0.1", 9)
    with pytest.raises(ValueError, match="delay"):
        proxy.delay(-1)
    with pytest.raises(ValueError, match="n must"):
        proxy.drop_responses(-1)
    with pytest.raises(ValueError, match="keep_bytes"):
        proxy.truncate_responses(1, keep_bytes=-1)
