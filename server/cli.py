"""The ``queuedesk-server`` command line (also ``python -m server``).

Each subcommand lives with the code it drives and is added here by one entry in
:data:`COMMANDS`: a function that takes the sub-parser collection, adds its
parser with :func:`add_command` and names a handler ``(args) -> exit status``.
Handlers import what they need when they run, so ``--help`` stays fast.

A failure the user can fix (a bad database URL, an unreachable server) is one
line on stderr and exit status 2, never a traceback: handlers raise
:class:`CommandError`, and database errors are turned into one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TypeAlias

from server.cli_admin import register_create_tenant, register_create_user, register_demo
from server.cli_audit import register_audit
from server.cli_keys import register_keys
from server.cli_serve import register_serve

PROG = "queuedesk-server"
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Registrar = Callable[[Subparsers], None]


class CommandError(Exception):
    """A failure to report as one line on stderr; the command exits with status 2."""


def add_command(
    subparsers: Subparsers, name: str, handler: Handler, help: str
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` that runs ``handler``; returns its parser for options."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler)
    return parser


def add_database_option(parser: argparse.ArgumentParser) -> None:
    """``--database-url``, defaulting to QUEUEDESK_DATABASE_URL or the SQLite file."""
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy URL of the database (default: $QUEUEDESK_DATABASE_URL, "
        "else an SQLite file in the data directory)",
    )


def database_url(args: argparse.Namespace) -> str:
    """The database URL for a command that used :func:`add_database_option`."""
    url: str | None = getattr(args, "database_url", None)
    if url:
        return url
    from server.config import get_settings

    return get_settings().database_url


def display_url(url: str) -> str:
    """``url`` with any password masked, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return url


def describe_database_error(exc: Exception) -> str:
    """One line saying what went wrong, without SQL or driver tracebacks."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc)
    # Drivers add hints on further lines; SQLAlchemy adds a "Background" link.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("(Background on this error")]
    return " ".join(lines) or type(exc).__name__


# --- migrate -------------------------------------------------------------------


def _migrate(args: argparse.Namespace) -> int:
    from alembic.util import CommandError as AlembicError

    from server.migrate import upgrade

    url = database_url(args)
    try:
        before, after = upgrade(url, args.revision)
    except AlembicError as exc:  # e.g. a database newer than this build
        raise CommandError(f"{display_url(url)}: {exc}") from exc
    where = display_url(url)
    if before == after:
        print(f"{where}: already at revision {after}")
    else:
        print(f"{where}: migrated from {before or 'an empty database'} to revision {after}")
    return 0


def register_migrate(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers, "migrate", _migrate, help="create or upgrade the database schema"
    )
    add_database_option(parser)
    parser.add_argument(
        "--revision", default="head", help="revision to upgrade to (default: %(default)s)"
    )


# One line per subcommand.
COMMANDS: tuple[Registrar, ...] = (
    register_migrate,
    register_create_tenant,
    register_create_user,
    register_demo,
    register_audit,
    register_keys,
    register_serve,
)


def _version() -> str:
    try:
        return version("queuedesk")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="The QueueDesk central service.")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    subparsers.required = True
    for register in COMMANDS:
        register(subparsers)
    return parser


def user_error(exc: Exception) -> str | None:
    """The one-line message for a failure the user can fix; None for a bug."""
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from server.db import DatabaseUrlError

    if isinstance(exc, CommandError | DatabaseUrlError):
        return str(exc)
    if isinstance(exc, ValidationError):  # a QUEUEDESK_* variable that does not parse
        problems = ", ".join(
            f"QUEUEDESK_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        return f"invalid setting {problems}"
    if isinstance(exc, SQLAlchemyError):
        return describe_database_error(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and --version (0), usage errors (2)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else EXIT_USAGE
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise  # a bug: the traceback is what a developer needs
        print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_USAGE
