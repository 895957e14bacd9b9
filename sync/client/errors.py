"""Errors of the local cache that are not domain errors (those come from ``core``)."""

from __future__ import annotations


class CacheError(Exception):
    """The cache file cannot be used as it is; the message says why and what to do."""


class SchemaTooNew(CacheError):  # noqa: N818 - reads as a fact
    """The file was written by a newer QueueDesk; this build must not touch it."""


class NotACacheFile(CacheError):  # noqa: N818
    """The file exists but is not a QueueDesk cache (or belongs to another branch)."""
