"""The one JSON line every benchmark ends with (see benchmarks/README.md)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    return parser.parse_args()


def report(
    name: str,
    *,
    value: float,
    unit: str,
    baseline: float,
    ratio: float,
    target: float | str,
    ok: bool,
    **extra: Any,
) -> None:
    line = {
        "benchmark": name,
        "value": round(value, 3),
        "unit": unit,
        "baseline": round(baseline, 3),
        "ratio": round(ratio, 3),
        "target": target,
        "ok": ok,
        **extra,
    }
    print(json.dumps(line))
