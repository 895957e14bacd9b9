"""``make run`` on a machine without a display: the service stays up, nothing crashes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_without_a_display_the_service_keeps_running_and_says_how_to_connect(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEDESK_")}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    env["QUEUEDESK_DATA_DIR"] = str(tmp_path / "var")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "packaging" / "run_demo.py"), "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "sign in to tenant" in line:  # the last line of the no-display message
                break
        output = "".join(lines)
        assert "No display here" in output, output
        assert f"http://127.0.0.1:{port}" in output
        assert "staff1" in output
        assert "HOST=0.0.0.0 make run" in output
        # The service really is up, with the demo tenant whose passwords were printed.
        password = next(ln.split()[1] for ln in lines if ln.strip().startswith("staff1"))
        login = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/auth/login",
            json={"tenant": "demo", "username": "staff1", "password": password},
            timeout=30,
        )
        assert login.status_code == 200, login.text
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    rest = process.stdout.read()
    process.stdout.close()
    assert "Traceback" not in rest
    assert process.returncode == 0
