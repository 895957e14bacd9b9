"""How times, priorities and states read on screen; shared by models and panels."""

from __future__ import annotations

from datetime import datetime

from core.values import PriorityClass

PRIORITY_LABELS = {
    PriorityClass.NORMAL: "Normal",
    PriorityClass.PRIORITY: "Priority",
    PriorityClass.URGENT: "Urgent",
}
CHANNEL_LABELS = {"walk_in": "Walk-in", "remote": "Remote", "appointment": "Appointment"}
STATUS_LABELS = {
    "waiting": "Waiting",
    "called": "Called",
    "serving": "In service",
    "parked": "Parked",
    "done": "Done",
    "no_show": "No-show",
    "cancelled": "Cancelled",
    "open": "Open",
    "paused": "Paused",
    "closed": "Closed",
}


def duration(seconds: float) -> str:
    """``42 s``, ``3:05``, ``1:02:09``: short enough for a table cell, never negative."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    if minutes:
        return f"{minutes}:{secs:02d}"
    return f"{secs} s"


def since(start: datetime | None, now: datetime) -> str:
    return "–" if start is None else duration((now - start).total_seconds())


def priority(value: int) -> str:
    try:
        return PRIORITY_LABELS[PriorityClass(value)]
    except ValueError:
        return str(value)


def channel(value: str) -> str:
    return CHANNEL_LABELS.get(value, value.replace("_", " ").title())


def status(value: str) -> str:
    return STATUS_LABELS.get(value, value.replace("_", " ").title())


def clock(moment: datetime | None) -> str:
    """Local wall-clock time of ``moment`` (``never`` when absent)."""
    if moment is None:
        return "never"
    return moment.astimezone().strftime("%H:%M:%S")
