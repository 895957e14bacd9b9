"""The ``queuedesk-server`` command line, run as ``python -m server``."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import main
from server.migrate import current_revision, head_revision


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def _assert_one_line_error(status: int, stderr: str, *fragments: str) -> None:
    assert status == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("queuedesk-server: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


# --- as a separate process -----------------------------------------------------


def test_migrate_creates_a_fresh_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'queuedesk.db'}"
    result = _run("migrate", "--database-url", url)
    assert result.returncode == 0, result.stderr
    assert f"from an empty database to revision {head_revision()}" in result.stdout
    assert current_revision(url) == head_revision()


def test_a_bad_url_is_one_line_on_stderr_and_status_2() -> None:
    result = _run("migrate", "--database-url", "definitely not a url")
    _assert_one_line_error(result.returncode, result.stderr, "malformed database URL")


# --- in process (faster) -------------------------------------------------------


def test_migrate_twice_has_nothing_to_do_the_second_time(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--database-url", db_url]) == 0
    assert f"already at revision {head_revision()}" in capsys.readouterr().out


def test_migrate_uses_the_default_sqlite_file_in_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0  # QUEUEDESK_DATA_DIR points into tmp_path (autouse fixture)
    assert (tmp_path / "data" / "queuedesk.db").exists()
    assert "queuedesk.db" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://root@localhost/queuedesk", "unsupported database URL scheme"),
        ("postgresql://qd:hunter2@localhost:port/qd", "malformed database URL"),
        ("sqlite:////dev/null/queuedesk.db", "cannot create the folder"),
    ],
)
def test_migrate_reports_a_bad_url_in_one_line(
    url: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["migrate", "--database-url", url])
    stderr = capsys.readouterr().err
    _assert_one_line_error(status, stderr, fragment)
    assert "hunter2" not in stderr


def test_migrate_reports_an_unreachable_server_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status = main(["migrate", "--database-url", f"postgresql://qd:hunter2@127.0.0.1:{port}/qd"])
    stderr = capsys.readouterr().err
    _assert_one_line_error(status, stderr, "connection", str(port))
    assert "hunter2" not in stderr


def test_migrate_refuses_a_database_newer_than_this_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "newer.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999')")
    conn.close()
    status = main(["migrate", "--database-url", f"sqlite:///{path}"])
    _assert_one_line_error(status, capsys.readouterr().err, "9999")


def test_version_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("queuedesk-server ")
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--help"]) == 0
    assert "--database-url" in capsys.readouterr().out


def test_a_setting_that_does_not_parse_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QUEUEDESK_ACCESS_TOKEN_TTL_S", "soon")
    status = main(["migrate"])
    _assert_one_line_error(status, capsys.readouterr().err, "QUEUEDESK_ACCESS_TOKEN_TTL_S")
