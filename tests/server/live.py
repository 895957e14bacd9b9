"""A real ``queuedesk-server serve`` process on 127.0.0.1, for tests that speak real HTTP.

:func:`serve` starts ``python -m server serve`` on a free port against a
database URL, waits until ``/readyz`` answers 200 and stops the process at the
end. :func:`live_server` is the same as a pytest fixture on ``db_url``; a test
module or conftest takes it with ``from tests.server.live import live_server``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class LiveServer:
    """A running server: its base URL and the database it serves."""

    base_url: str
    database_url: str
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # polling a condition with a deadline, not a fixed wait
    raise RuntimeError(f"server not ready after {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")


@contextmanager
def serve(database_url: str, log_dir: Path) -> Iterator[LiveServer]:
    """Run the server on a free port until the block ends."""
    port = free_port()
    log = log_dir / f"server-{port}.log"
    env = {**os.environ, "QUEUEDESK_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "server", "serve", "--port", str(port)]
    command += ["--log-level", "warning"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, base_url, log)
        yield LiveServer(base_url=base_url, database_url=database_url, log=log)
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def live_server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A real server on ``db_url`` (each backend), stopped after the test."""
    with serve(db_url, tmp_path) as server:
        yield server
