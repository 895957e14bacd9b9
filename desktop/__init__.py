"""The QueueDesk staff console (PySide6 + qasync).

Windows, widgets, Qt item models and the bridge to the background sync thread.
It reads and writes the local cache only through ``sync`` and never does SQL or
HTTP of its own.
"""

import sys

# httpx imports its command-line client (click, rich, pygments: about 60 ms of the
# console's start) whenever those are installed, as they are next to the developer
# tools. The console never runs it; a None entry makes that import fail at once,
# and httpx then defines a stub ``httpx.main``.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]
