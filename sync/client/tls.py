"""One verifying TLS context per process, shared by every HTTP client of the console.

Building a context loads the whole CA bundle (about 25 ms); the console makes one
client to sign in and another in its sync thread, both at start-up.
"""

from __future__ import annotations

import ssl
import threading

import httpx

_lock = threading.Lock()
_default: ssl.SSLContext | None = None


def client_verify(verify: bool | ssl.SSLContext = True) -> bool | ssl.SSLContext:
    """What to pass as ``verify`` to httpx: the shared context for the default ``True``."""
    global _default
    if verify is not True:
        return verify  # False, or a context the caller built (its own CA)
    with _lock:
        if _default is None:
            _default = httpx.create_ssl_context()
        return _default
