"""Wire schemas of the sync protocol, shared by the client and the central service.

The event payloads themselves are :mod:`core.events`; this module holds the
envelopes around them (push batches, pull pages, stream messages, leases).
"""

from __future__ import annotations

PROTOCOL_VERSION = 1
