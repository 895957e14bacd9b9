"""``queuedesk``: start the staff console."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="queuedesk", description="QueueDesk staff console for counters and branch managers."
    )
    parser.add_argument("--version", action="version", version=f"queuedesk {version('queuedesk')}")
    parser.add_argument("--server", metavar="URL", help="address of the QueueDesk service")
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        help="where the local cache and settings are kept (default: the platform's)",
    )
    parser.add_argument("--tenant", help="sign in to this tenant (with --username)")
    parser.add_argument("--username", help="sign in as this user (with --password-stdin)")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input and sign in at once (make run uses this)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    password = None
    if args.password_stdin:
        if not (args.server and args.tenant and args.username):
            parser.error("--password-stdin needs --server, --tenant and --username")
        password = sys.stdin.readline().rstrip("\r\n")
    from desktop.app import SignInRequest, run  # Qt loads only once the arguments are fine

    request = None
    if password is not None:
        request = SignInRequest(args.server, args.tenant, args.username, password)
    return run(server=args.server, data_dir=args.data_dir, sign_in=request)


if __name__ == "__main__":
    sys.exit(main())
