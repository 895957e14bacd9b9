"""``python -m server``: the same as the ``queuedesk-server`` command."""

from server.cli import main

raise SystemExit(main())
