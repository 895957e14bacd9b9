"""Render the README's screenshots of the console: ``make screenshots``.

Starts a throwaway ``queuedesk-server`` with the demo tenant on 127.0.0.1, signs
two counter consoles in (an in-memory keyring, a temporary HOME), plays a short
counter session, then signs the branch manager in on a third, and saves, at
1280×800 and 1920×1080 each:

- ``signin-<size>.png``: the sign-in dialog;
- ``counter-<size>.png``: a counter at work (current ticket in service, queues);
- ``offline-<size>.png``: the service stopped: the banner, changes kept in the outbox;
- ``alert-<size>.png``: a conflict between two consoles, the alert and its toast;
- ``dashboard-<size>.png``: a third console, the branch manager's, once it has synced
  the day: the Dashboard tab with today's figures and the queue per service;
- ``reports-<size>.png``: that console's report window, today's report run: the key
  figures and the three charts.

Run under Xvfb where there is one (``xvfb-run python packaging/screenshots.py``);
without a display it falls back to Qt's offscreen platform, which renders the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

SIZES = ((1280, 800), (1920, 1080))
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """The demo service in a subprocess, stoppable and restartable on one port."""

    def __init__(self, folder: Path) -> None:
        self.env = {**os.environ, "QUEUEDESK_DATABASE_URL": f"sqlite:///{folder / 'server.db'}"}
        self.env["QUEUEDESK_DATA_DIR"] = str(folder / "server-data")
        self.env["QUEUEDESK_SYNC_HEARTBEAT_S"] = "1"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        demo = subprocess.run(
            [sys.executable, "-m", "server", "demo", "--json"],
            env=self.env,
            capture_output=True,
            check=True,
        )
        self.demo = json.loads(demo.stdout)

    def start(self) -> None:
        import httpx

        command = [sys.executable, "-m", "server", "serve", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, "--log-level", "warning"], stdout=out, stderr=out, env=self.env
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the service did not start; see {self.log}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)
            self.process = None


@contextmanager
def private_home(folder: Path) -> Iterator[None]:
    for name, sub in (("HOME", ""), ("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", "data")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(folder / sub)
    yield


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


async def settle() -> None:
    """Let layouts, timers and queued signals run."""
    for _ in range(5):
        await asyncio.sleep(0.05)


async def shoot(widget, out: Path, name: str, backdrop: bool = False) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QColor, QPainter, QPixmap

    for width, height in SIZES:
        if backdrop:
            pixmap = QPixmap(width, height)
            pixmap.fill(QColor("#dfe4ea"))
            widget.adjustSize()
            await settle()
            shot = widget.grab()
            painter = QPainter(pixmap)
            painter.drawPixmap(
                QPoint((width - shot.width()) // 2, (height - shot.height()) // 2), shot
            )
            painter.end()
        else:
            widget.resize(width, height)
            await settle()
            pixmap = widget.grab()
        path = out / f"{name}-{width}x{height}.png"
        pixmap.save(str(path))
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


async def scenario(service: Service, out: Path, data: Path) -> None:
    from desktop.console import Console
    from desktop.settings import ConsoleSettings
    from sync.client.backoff import Backoff
    from sync.client.credentials import KeyringCredentialStore
    from sync.client.engine import EngineSettings

    fast = EngineSettings(
        poll_interval_s=1.0,
        retry_backoff=Backoff(base=0.1, cap=0.5),
        stream_backoff=Backoff(base=0.1, cap=0.5),
    )
    tenant, passwords = service.demo["tenant"], service.demo["users"]

    async def console(name: str, user: str, counter_index: int) -> Console:
        made = Console(
            settings=ConsoleSettings.in_dir(data / name),
            store=KeyringCredentialStore(),
            data_dir=data / name,
            server=service.url,
            engine_settings=fast,
        )
        await made.start()
        dialog = made.dialog
        assert dialog is not None
        dialog.tenant.setText(tenant)
        dialog.username.setText(user)
        dialog.password.setText(passwords[user])
        if name == "a":
            await shoot(dialog, out, "signin", backdrop=True)
        await dialog.submit()
        await until(lambda: made.window is not None, "the main window")
        window = made.window
        assert window is not None
        await until(lambda: window.counter.count() > counter_index, "the counters")
        window.counter.setCurrentIndex(counter_index)
        return made

    a = await console("a", "staff1", 1)
    b = await console("b", "staff2", 2)
    wa, ws = a.window, a.workspace
    assert wa is not None
    assert ws is not None
    wa.show()
    ws.open_counter()
    snapshot = ws.snapshot()
    services = {s.code: s.id for s in snapshot.services}
    from core.values import PriorityClass

    for code, priority, name in (
        ("A", PriorityClass.NORMAL, None),
        ("A", PriorityClass.NORMAL, None),
        ("L", PriorityClass.PRIORITY, None),
        ("A", PriorityClass.URGENT, "Maria Lopez"),
        ("C", PriorityClass.NORMAL, None),
        ("L", PriorityClass.NORMAL, "Jonas Berg"),
        ("A", PriorityClass.NORMAL, None),
        ("L", PriorityClass.NORMAL, None),
    ):
        ws.issue(services[code], priority, name)
    ws.call_next()
    ws.start()
    await until(lambda: wa.status.outbox_count == 0, "the outbox to drain")
    await asyncio.sleep(1.2)  # the waited times tick once
    await shoot(wa, out, "counter")

    service.stop()
    await until(lambda: wa.offline, "the console to notice the outage")
    ws.complete()
    ws.call_next()
    wb, wsb = b.window, b.workspace
    assert wb is not None
    assert wsb is not None
    wsb.open_counter()
    wsb.call_next()  # both consoles, offline, call the same ticket
    await settle()
    wa.notifier.toast.hide()
    await shoot(wa, out, "offline")

    service.start()
    await until(
        lambda: (
            bool(wa.alerts.model.items and wb.alerts.model.items)
            and any(i.cache_id for i in wa.alerts.model.items + wb.alerts.model.items)
        ),
        "the conflict alert",
    )
    loser = wa if any(i.cache_id for i in wa.alerts.model.items) else wb
    loser.lower_tabs.setCurrentIndex(1)
    rejected = next(i for i in loser.alerts.model.items if i.cache_id)
    loser.notifier.toast.show_message(rejected.title, rejected.message, rejected.severity)
    loser.show()
    await shoot(loser, out, "alert")

    # The branch manager's view of the same day, once the counters' consoles converged.
    def figures(made: Console) -> tuple[int, ...]:
        workspace = made.workspace
        assert workspace is not None
        today = workspace.today_report()
        waiting = sum(len(rows) for rows in workspace.waiting().values())
        return today.issued, today.called, today.served, waiting

    await until(lambda: wa.status.outbox_count == wb.status.outbox_count == 0, "the outboxes")
    await until(lambda: figures(a) == figures(b), "the consoles to converge")
    m = await console("m", "manager", 0)
    wm = m.window
    assert wm is not None
    await until(lambda: figures(m) == figures(a), "the manager's console to sync the day")
    wm.lower_tabs.setCurrentWidget(wm.dashboard)
    dashboard = wm.dashboard
    await until(
        lambda: dashboard.data is not None and dashboard.data.today.issued == figures(a)[0],
        "the dashboard",
    )
    await shoot(wm, out, "dashboard")
    reports = wm.open_reports()
    assert reports is not None
    reports.run_button.click()  # runs today's report (the default range) as an async slot
    await until(lambda: reports.result is not None and reports.run_button.isEnabled(), "the report")
    await shoot(reports, out, "reports")
    for made in (a, b, m):
        await made.shutdown()
    await settle()  # the closed report window is deleted while Qt runs, not at exit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="queuedesk-shots-") as tmp:
        folder = Path(tmp)
        with private_home(folder / "home"):
            import keyring
            import qasync
            from PySide6.QtWidgets import QApplication

            from sync.client.credentials import InMemoryKeyring

            keyring.set_keyring(InMemoryKeyring())
            service = Service(folder)
            service.start()
            try:
                app = QApplication.instance() or QApplication(sys.argv[:1])
                app.setQuitOnLastWindowClosed(False)  # type: ignore[union-attr]
                loop = qasync.QEventLoop(app)
                asyncio.set_event_loop(loop)
                with loop:
                    loop.run_until_complete(scenario(service, args.out, folder / "consoles"))
            finally:
                service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
