"""Database fixtures for the central service's tests, on SQLite and PostgreSQL.

``db_url`` gives every test a fresh, migrated database on each backend. Both
backends migrate once per session into a template (a file for SQLite, a
``TEMPLATE`` database for PostgreSQL) and each test gets a copy, which costs
milliseconds instead of a full migration.

The PostgreSQL cluster is a throwaway one started with the machine's
``initdb``/``pg_ctl`` in a temporary directory, on 127.0.0.1 and a free port,
with trust authentication and durability switched off for speed.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from server.config import get_settings, sqlite_url
from server.db import make_engine, make_session_factory
from server.migrate import upgrade

BACKENDS = (
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
)
PG_TEMPLATE = "qd_template"
PG_SUPERUSER = "postgres"
# A system account to run PostgreSQL under when tests run as root (initdb
# refuses root) and the machine has no "postgres" account.
PG_FALLBACK_OS_USER = "queuedesk-pg"


def _pg_bindir() -> Path | None:
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return Path(candidates[-1]).parent if candidates else None


def _os_user_for_postgres() -> str | None:
    """The account to run initdb/pg_ctl as; None means the current one."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", PG_FALLBACK_OS_USER):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    subprocess.run([*useradd, PG_FALLBACK_OS_USER], check=True, capture_output=True)
    return PG_FALLBACK_OS_USER


def _cluster_parent_dir() -> str | None:
    """A RAM-backed folder for the cluster when there is a roomy one, else the default.

    With fsync off PostgreSQL still creates and copies many files per CREATE
    DATABASE; on tmpfs that is ten times faster than on a disk.
    """
    shm = Path("/dev/shm")
    try:
        if os.access(shm, os.W_OK | os.X_OK) and shutil.disk_usage(shm).free > 1 << 30:
            return str(shm)
    except OSError:
        pass
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass(frozen=True)
class PostgresCluster:
    """A running throwaway cluster; connect as the trusted superuser."""

    host: str
    port: int
    user: str = PG_SUPERUSER
    server_version_num: int = 0  # e.g. 150004; filled in by the fixture

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` in this cluster."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def execute(self, sql: str) -> str | None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that).

        Returns the first column of the first row, if the statement returns rows.
        """
        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            cursor = conn.execute(sql.encode())
            row = cursor.fetchone() if cursor.description else None
            return None if row is None else str(row[0])

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create ``name`` (optionally as a copy of ``template``) and return its URL."""
        clause = f' TEMPLATE "{template}"' if template else ""
        if template and self.server_version_num >= 150000:
            # The default WAL_LOG strategy copies page by page through the WAL;
            # copying the files is several times faster for a small template.
            clause += " STRATEGY FILE_COPY"
        self.execute(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _start_cluster(bindir: Path, root: Path, os_user: str | None) -> int:
    """initdb and start a cluster under ``root``; returns its port."""
    run_as = ["runuser", "-u", os_user, "--"] if os_user else []
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os_user:
        for path in (root, sockets):
            shutil.chown(path, user=os_user, group=pwd.getpwnam(os_user).pw_gid)
    initdb = ["-D", str(data), "-U", PG_SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"]
    done = subprocess.run(
        [*run_as, str(bindir / "initdb"), *initdb, "--no-sync"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
    last_error = ""
    for _ in range(3):  # the free port may be taken before the server binds it
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        start = ["-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "-o", options]
        result = subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), *start, "start"], capture_output=True, text=True
        )
        if result.returncode == 0:
            return port
        last_error = result.stderr or result.stdout
    log = (root / "server.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"could not start PostgreSQL: {last_error}\n{log}")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the whole session, stopped and deleted at the end."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed")
    os_user = _os_user_for_postgres()
    run_as = ["runuser", "-u", os_user, "--"] if os_user else []
    root = Path(tempfile.mkdtemp(prefix="queuedesk-pg-", dir=_cluster_parent_dir()))
    try:
        port = _start_cluster(bindir, root, os_user)
        try:
            cluster = PostgresCluster(host="127.0.0.1", port=port)
            version = int(cluster.execute("SHOW server_version_num") or 0)
            yield dataclasses.replace(cluster, server_version_num=version)
        finally:
            stop = ["-D", str(root / "data"), "-m", "immediate", "stop"]
            subprocess.run([*run_as, str(bindir / "pg_ctl"), *stop], capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_template(postgres_cluster: PostgresCluster) -> str:
    """The name of a database migrated to head, to copy for each test."""
    upgrade(postgres_cluster.create_database(PG_TEMPLATE))
    return PG_TEMPLATE


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated to head, to copy for each test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(sqlite_url(path))
    # The last connection closing checkpoints the WAL into the main file.
    assert not path.with_name(path.name + "-wal").exists()
    return path


def _fresh_database(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, *, migrated: bool
) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp_path / f"queuedesk-{uuid.uuid4().hex[:8]}.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield sqlite_url(path)
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    template = request.getfixturevalue("postgres_template") if migrated else None
    name = f"qd_{uuid.uuid4().hex}"
    url = cluster.create_database(name, template=template)
    try:
        yield url
    finally:
        cluster.drop_database(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend of a test: "sqlite" or "postgres"."""
    name: str = request.param
    return name


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh database at head, on each backend."""
    yield from _fresh_database(backend, request, tmp_path, migrated=True)


@pytest.fixture
def empty_db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty (never migrated) database, on each backend."""
    yield from _fresh_database(backend, request, tmp_path, migrated=False)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url``, disposed after the test."""
    eng = make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep tests away from the real data directory and the caller's environment."""
    for name in list(os.environ):
        if name.startswith("QUEUEDESK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("QUEUEDESK_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
