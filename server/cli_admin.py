"""Commands that set up tenants and users: ``create-tenant``, ``create-user``, ``demo``.

Registered in :data:`server.cli.COMMANDS`. This module imports :mod:`server.cli`
only when a command is built or run, since ``server.cli`` imports it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from server.cli import Subparsers


@contextmanager
def open_database(
    args: argparse.Namespace, *, migrate: bool = False, read_only: bool = False
) -> Iterator[sessionmaker[Session]]:
    """A session factory on the command's database, which must be at head.

    ``migrate=True`` upgrades an older (or empty) database first instead of
    refusing it; ``read_only=True`` keeps a long read from blocking writers.
    """
    from alembic.util import CommandError as AlembicError

    from server.cli import CommandError, database_url, display_url
    from server.db import make_engine, make_session_factory
    from server.migrate import current_revision, head_revision, upgrade

    url = database_url(args)
    if current_revision(url) != head_revision():
        if not migrate:
            raise CommandError(
                f"{display_url(url)} is not at the current schema: "
                "run 'queuedesk-server migrate' first"
            )
        try:
            upgrade(url)
        except AlembicError as exc:  # e.g. a database newer than this build
            raise CommandError(f"{display_url(url)}: {exc}") from exc
    engine = make_engine(url)
    try:
        yield make_session_factory(engine, read_only=read_only)
    finally:
        engine.dispose()


@contextmanager
def service_errors() -> Iterator[None]:
    """Turn the service layer's refusals into one-line command errors."""
    from core.errors import InvalidValue
    from server.cli import CommandError
    from server.security.passwords import PasswordPolicyError
    from server.services.errors import Conflict, NotFound

    try:
        yield
    except (InvalidValue, PasswordPolicyError, NotFound, Conflict) as exc:
        raise CommandError(str(exc)) from exc


def read_new_password(args: argparse.Namespace, prompt: Callable[[str], str] | None = None) -> str:
    """One line of stdin with ``--password-stdin``, else typed twice without echo."""
    from server.cli import CommandError
    from server.security.passwords import PasswordPolicyError, validate_new_password

    prompt = prompt or getpass.getpass  # looked up now, so tests can replace it
    if args.password_stdin:
        # Only the line end is dropped: leading or trailing spaces may be meant.
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CommandError("no password on standard input")
    else:
        password = prompt("Password: ")
    try:
        validate_new_password(password)
    except PasswordPolicyError as exc:
        raise CommandError(str(exc)) from exc
    if not args.password_stdin and prompt("Repeat password: ") != password:
        raise CommandError("the passwords do not match")
    return password


def _add_password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of prompting",
    )


# --- create-tenant -------------------------------------------------------------


def _create_tenant(args: argparse.Namespace) -> int:
    from core.permissions import TENANT_ADMIN
    from server.db import session_scope
    from server.services import tenants

    with open_database(args) as factory:
        with service_errors(), session_scope(factory) as session:
            tenants.check_new_slug(session, args.slug)  # fail before asking for a password
        password = read_new_password(args)
        with service_errors(), session_scope(factory) as session:
            tenant = tenants.create_tenant(session, args.slug, args.name)
            tenants.create_user(session, tenant, args.admin, password, roles=[(TENANT_ADMIN, None)])
            tenant_id = tenant.id
    print(tenant_id)
    return 0


def register_create_tenant(subparsers: Subparsers) -> None:
    from server.cli import add_command, add_database_option

    parser = add_command(
        subparsers,
        "create-tenant",
        _create_tenant,
        help="create a tenant with its built-in roles and an administrator; prints its id",
    )
    parser.add_argument("slug", metavar="SLUG", help="short name: a-z, 0-9 and '-'")
    parser.add_argument("--name", required=True, help="the organisation's display name")
    parser.add_argument(
        "--admin", required=True, metavar="USERNAME", help="username of the tenant_admin"
    )
    _add_password_option(parser)
    add_database_option(parser)


# --- create-user ---------------------------------------------------------------


def _parse_branch(text: str | None) -> uuid.UUID | None:
    from server.cli import CommandError

    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise CommandError(f"--branch: {text!r} is not a branch id") from None


def _create_user(args: argparse.Namespace) -> int:
    from server.db import session_scope
    from server.services import tenants

    branch_id = _parse_branch(args.branch)
    with open_database(args) as factory:
        with service_errors(), session_scope(factory) as session:
            tenants.tenant_by_slug(session, args.tenant)  # fail before asking for a password
        password = read_new_password(args)
        with service_errors(), session_scope(factory) as session:
            tenant = tenants.tenant_by_slug(session, args.tenant)
            user = tenants.create_user(
                session,
                tenant,
                args.username,
                password,
                display_name=args.display_name or "",
                roles=[(args.role, branch_id)],
            )
            user_id = user.id
    print(user_id)
    return 0


def register_create_user(subparsers: Subparsers) -> None:
    from server.cli import add_command, add_database_option

    parser = add_command(
        subparsers, "create-user", _create_user, help="create a user of a tenant; prints its id"
    )
    parser.add_argument("tenant", metavar="TENANT", help="the tenant's slug")
    parser.add_argument("username", metavar="USERNAME")
    parser.add_argument(
        "--role", required=True, help="role name, e.g. tenant_admin, branch_manager, staff"
    )
    parser.add_argument(
        "--branch", metavar="ID", help="grant the role at this branch (branch-scoped roles)"
    )
    parser.add_argument("--display-name", metavar="NAME")
    _add_password_option(parser)
    add_database_option(parser)


# --- demo ------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from server.db import session_scope
    from server.services import tenants

    with open_database(args, migrate=True) as factory, session_scope(factory) as session:
        info = tenants.ensure_demo(session)
    if args.json:
        document = {
            "tenant": info.tenant_slug,
            "users": info.users,
            "branch_id": str(info.branch_id),
        }
        print(json.dumps(document))
        return 0
    print(f"demo tenant: {info.tenant_slug}")
    print(f"branch id:   {info.branch_id}")
    print("users (new passwords, shown only now):")
    for username, password in info.users.items():
        print(f"  {username:<8} {password}")
    return 0


def register_demo(subparsers: Subparsers) -> None:
    from server.cli import add_command, add_database_option

    parser = add_command(
        subparsers,
        "demo",
        _demo,
        help="create or reuse the demo tenant and print its users' new passwords",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object: tenant, users, branch_id"
    )
    add_database_option(parser)
