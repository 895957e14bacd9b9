"""``queuedesk-server keys rotate``: put a new access-token signing key in service.

Running servers pick the new key up by themselves within seconds; tokens signed
by the old key keep working until they expire.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.cli import Subparsers


def _rotate(args: argparse.Namespace) -> int:
    from server.cli import database_url
    from server.db import make_engine, make_session_factory, session_scope
    from server.services.keys import rotate_keys

    engine = make_engine(database_url(args))
    try:
        with session_scope(make_session_factory(engine)) as session:
            new = rotate_keys(session)
    finally:
        engine.dispose()
    print(new.kid)
    return 0


def register_keys(subparsers: Subparsers) -> None:
    # Imported here: server.cli imports this module to list its commands.
    from server.cli import add_command, add_database_option

    parser = add_command(subparsers, "keys", _no_action, help="manage access-token signing keys")
    actions = parser.add_subparsers(title="actions", dest="keys_action", metavar="ACTION")
    actions.required = True
    rotate = add_command(
        actions, "rotate", _rotate, help="make a new signing key active and print its kid"
    )
    add_database_option(rotate)


def _no_action(_args: argparse.Namespace) -> int:  # pragma: no cover - argparse requires one
    return 2
