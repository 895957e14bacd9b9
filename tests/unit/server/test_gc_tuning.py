"""The service freezes long-lived objects so full collections stay short."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import gc, json
    from server.gc_tuning import freeze_long_lived

    start = [object() for _ in range(10)]
    default = gc.get_threshold()
    freeze_long_lived()
    tuned = gc.get_threshold()
    frozen_at_start = gc.get_freeze_count()
    warm = [[n] for n in range(5000)]  # what the first requests build
    before_full = gc.get_freeze_count()
    gc.collect()  # the first full collection after start-up
    after_first = gc.get_freeze_count()
    more = [[n] for n in range(5000)]
    gc.collect()  # later full collections freeze nothing more
    counts = [frozen_at_start, before_full, after_first, gc.get_freeze_count()]
    print(json.dumps([counts, default, tuned]))
    """
)


def test_start_up_and_first_full_collection_survivors_are_frozen_then_no_more() -> None:
    """Also: young collections run less often than by default."""
    from server.gc_tuning import YOUNG_THRESHOLD

    # A process of its own: freezing in the test process would keep its garbage.
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    )
    counts, default, tuned = json.loads(done.stdout)
    at_start, before_full, after_first, later = counts
    assert at_start > 0
    assert before_full == at_start  # nothing frozen between collections
    assert after_first >= at_start + 5000  # the warm objects joined the frozen ones
    assert later == after_first
    assert tuned[0] == YOUNG_THRESHOLD > default[0]
    assert tuned[1:] == [10, 10]
