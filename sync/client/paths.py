"""Where a console keeps its local caches: one SQLite file per server, tenant and branch.

A console may be pointed at several services (production, training) and staff may
switch branches; mixing their logs in one file would rebase one branch's events on
another's. The file name therefore encodes all three, readably for support staff
(``cache-queue.example.org-acme-1f2e3d4c-…``) and unambiguously through a hash of
the exact triple, so two URLs differing only in case or path never share a file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from platformdirs import user_data_dir

APP_NAME = "QueueDesk"
_UNSAFE = re.compile(r"[^a-z0-9.]+")


def default_data_dir() -> Path:
    """The per-user data directory of the console (platformdirs), not created here."""
    return Path(user_data_dir(APP_NAME, APP_NAME))


def _slug(text: str, limit: int) -> str:
    return _UNSAFE.sub("-", text.lower()).strip("-.")[:limit] or "x"


def cache_path(data_dir: Path, server_url: str, tenant: str, branch_id: str) -> Path:
    """The cache file of ``branch_id`` of ``tenant`` on ``server_url`` inside ``data_dir``.

    Only ``[a-z0-9.-]`` appear in the name, so it is safe on every file system; the
    directory is created if missing.
    """
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", server_url.strip().lower()).split("/")[0]
    digest = hashlib.sha256(f"{server_url}\n{tenant}\n{branch_id}".encode()).hexdigest()[:16]
    name = f"cache-{_slug(host, 40)}-{_slug(tenant, 30)}-{_slug(branch_id, 8)}-{digest}.sqlite3"
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir / name
