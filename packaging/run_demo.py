"""``make run``: the service on the demo tenant, and a console signed in to it.

1. ``queuedesk-server demo --json`` creates (or reuses) the demo tenant and gives
   its users new passwords, printed once here.
2. ``queuedesk-server serve`` starts on ``--host``/``--port`` and is waited for
   until ``/readyz`` answers.
3. Where a display exists, ``queuedesk`` opens signed in as ``staff1`` (the
   password goes through standard input, never the command line). Closing the
   console stops the service.
4. Without a display (Linux without ``DISPLAY``/``WAYLAND_DISPLAY``) it says so
   plainly, keeps the service running and prints how to connect a console from
   another machine, until Ctrl+C. Qt is never started there, so there is no
   platform-plugin crash.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

READY_TIMEOUT_S = 60.0
CONSOLE_USER = "staff1"


def has_display() -> bool:
    """False only where a Qt window certainly cannot open: Linux without X11 or Wayland."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def tool(name: str) -> str:
    """A console script installed beside this interpreter (the project's venv)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise SystemExit(f"make run: {name} is not installed; run `make run` from a clean clone")
    return found


def create_demo() -> dict[str, Any]:
    result = subprocess.run(
        [tool("queuedesk-server"), "demo", "--json"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"make run: creating the demo tenant failed:\n{result.stderr.strip()}")
    demo: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return demo


def wait_ready(server: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"make run: the service exited with code {server.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # polling a condition, with a deadline
    raise SystemExit(f"make run: the service did not become ready within {READY_TIMEOUT_S:g} s")


def print_sign_in(demo: dict[str, Any], url: str) -> None:
    print(f"QueueDesk service: {url}   (API docs: {url}/docs)")
    print(f"Demo tenant: {demo['tenant']}   branch: {demo['branch_id']}")
    print("Demo sign-in (new passwords, shown once):")
    for username, password in demo["users"].items():
        print(f"  {username:<10} {password}")
    sys.stdout.flush()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    demo = create_demo()
    serve = [tool("queuedesk-server"), "serve", "--host", args.host, "--port", str(args.port)]
    server = subprocess.Popen(serve)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    try:
        wait_ready(server, url)
        print_sign_in(demo, url)
        if not has_display():
            print(
                "No display here (neither DISPLAY nor WAYLAND_DISPLAY is set), so the console "
                "cannot open on this machine. The service keeps running; press Ctrl+C to stop it.\n"
                "To use a console from another machine, start the service reachable from the "
                "network (HOST=0.0.0.0 make run) and run there:\n"
                f"  queuedesk --server http://<this machine's address>:{args.port}\n"
                f"and sign in to tenant {demo['tenant']} with one of the users above."
            )
            sys.stdout.flush()
            return server.wait()
        command = [tool("queuedesk"), "--server", url, "--tenant", demo["tenant"]]
        command += ["--username", CONSOLE_USER, "--password-stdin"]
        print(f"Opening the staff console as {CONSOLE_USER}; close it to stop the service.")
        console = subprocess.Popen(command, stdin=subprocess.PIPE)
        assert console.stdin is not None
        console.stdin.write(f"{demo['users'][CONSOLE_USER]}\n".encode())
        console.stdin.close()
        return console.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(server)


if __name__ == "__main__":
    sys.exit(main())
