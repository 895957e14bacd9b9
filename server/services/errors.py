"""Exceptions of the service layer, mapped to HTTP 404 and 409 by the API.

Bad input is :class:`core.errors.InvalidValue` (422); these two are about state.
"""

from __future__ import annotations


class NotFound(LookupError):  # noqa: N818 - reads as a fact, like core.errors
    """No such object in the caller's tenant (another tenant's id is not found either)."""


class Conflict(Exception):  # noqa: N818
    """The request clashes with what exists: a duplicate name, a built-in role, the last admin."""
