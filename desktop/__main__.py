"""``queuedesk``: start the staff console."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="queuedesk", description="QueueDesk staff console for counters and branch managers."
    )
    parser.add_argument("--version", action="version", version=f"queuedesk {version('queuedesk')}")
    parser.add_argument("--server", metavar="URL", help="address of the QueueDesk service")
    parser.add_argument("--data-dir", metavar="DIR", help="where the local cache is kept")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print(
        "The QueueDesk console window is not part of this build yet; "
        "run 'queuedesk-server --help' for the service.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
