"""``queuedesk-server serve``: run the central service with uvicorn.

The schema is migrated to head first (``--no-migrate`` skips that, for
deployments that migrate in a separate step). Forwarded-for headers are ignored
unless ``--forwarded-allow-ips`` names the proxies to trust: the client address
decides login throttling and is written to the audit log, so it must not be
something any client can set.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.cli import Subparsers


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from alembic.util import CommandError as AlembicError

    from server.app import create_app
    from server.cli import CommandError, database_url
    from server.config import get_settings
    from server.gc_tuning import freeze_long_lived
    from server.migrate import upgrade

    url = database_url(args)
    if not args.no_migrate:
        try:
            upgrade(url)
        except AlembicError as exc:
            raise CommandError(f"cannot migrate the database: {exc}") from exc
    settings = get_settings().model_copy(update={"database_url": url})
    trusted = args.forwarded_allow_ips
    app = create_app(settings)
    freeze_long_lived()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        server_header=False,
    )
    return 0


def register_serve(subparsers: Subparsers) -> None:
    # Imported here: server.cli imports this module to list its commands.
    from server.cli import add_command, add_database_option

    parser = add_command(subparsers, "serve", _serve, help="run the central service (HTTP API)")
    add_database_option(parser)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--no-migrate", action="store_true", help="do not upgrade the database schema first"
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        default="",
        help="comma-separated addresses of reverse proxies whose X-Forwarded-For is trusted "
        "(default: none)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default: %(default)s)",
    )
