"""Short full collections for the long-running service process.

The cyclic garbage collector's full (generation 2) collection walks every
tracked object, holding the GIL: in a service with its imports, compiled
statements and branch states in memory that took 60-140 ms under load, a pause
every few seconds that every request in flight waits out. Objects alive at
start-up, and those that survive the first full collection after it (what the
first requests built: caches, branch states), live as long as the process;
:func:`gc.freeze` moves them out of the collector's sight, so later full
collections only walk what came after (measured: 6-40 ms).

Only ``queuedesk-server serve`` calls this: a process that builds and drops many
apps (the test suite) would keep their garbage.
"""

from __future__ import annotations

import gc
from typing import Any

YOUNG_THRESHOLD = 5_000


def freeze_long_lived() -> None:
    """Freeze what is alive now, and once more after the next full collection."""
    gc.collect()
    gc.freeze()
    # Young collections: the default threshold (700 net allocations) ran one every
    # few requests, about 1,900 in a minute under load (1.2 s in all, some 16 ms
    # long). A request frees nearly all it allocates by reference counting, so
    # collecting less often costs little more per collection and far less in all
    # (measured at 5,000: 71 collections, 0.36 s in all, at most 14 ms).
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
    pending = True

    def after_first_full_collection(phase: str, info: dict[str, Any]) -> None:
        nonlocal pending
        if pending and phase == "stop" and info.get("generation") == 2:
            pending = False
            gc.freeze()

    gc.callbacks.append(after_first_full_collection)
