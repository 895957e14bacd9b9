"""Errors raised by the queue domain.

``InvalidValue`` is bad input (a malformed phone number, an unknown time zone):
clients map it to 422. ``DomainError`` is a well-formed command that the current
state forbids ("A042 is serving at counter 3; it cannot be called"): clients map
it to 409 and the sync protocol reports it as a per-event rejection. Messages are
written for the member of staff who will read them.
"""

from __future__ import annotations


class QueueDeskError(Exception):
    """Base class of every error the domain raises on purpose."""


class InvalidValue(QueueDeskError, ValueError):  # noqa: N818 - reads as a fact, like the others
    """A value failed validation. ``field`` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DomainError(QueueDeskError):
    """The command is well-formed but the branch's current state forbids it."""


class UnknownTicket(DomainError):  # noqa: N818
    """No ticket with this id (or number) exists in the branch."""


class UnknownCounter(DomainError):  # noqa: N818
    """No counter with this id exists in the branch."""


class UnknownService(DomainError):  # noqa: N818
    """No service with this id exists in the branch."""


class MalformedEvent(QueueDeskError, ValueError):  # noqa: N818
    """Serialised event input that cannot be parsed. ``field`` names the culprit."""

    def __init__(self, message: str, *, field: str | None = None, event_id: str | None = None):
        where = []
        if event_id:
            where.append(f"event {event_id}")
        if field:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.field = field
        self.event_id = event_id
        self.message = message
