"""One verifying TLS context per process, shared by every HTTP client of the console.

Building a context loads the whole CA bundle (about 25-50 ms); the console makes
one client to sign in and another in its sync thread, both at start-up. A client
of a plain-HTTP server (``http://``, such as a service on the same machine or a
test server) needs no CA bundle: it gets a context that verifies but trusts no
authority, so nothing is loaded, and an https:// request sent through that client
would fail verification rather than go unchecked.
"""

from __future__ import annotations

import ssl
import threading

import httpx

_lock = threading.Lock()
_default: ssl.SSLContext | None = None
_trusting_none: ssl.SSLContext | None = None


def client_verify(
    verify: bool | ssl.SSLContext = True, server_url: str | None = None
) -> bool | ssl.SSLContext:
    """What to pass as ``verify`` to httpx: a shared context for the default ``True``.

    With ``server_url`` of a plain-HTTP server the context trusts no authority
    (see the module's text); otherwise it trusts the CA bundle.
    """
    global _default, _trusting_none
    if verify is not True:
        return verify  # False, or a context the caller built (its own CA)
    plain = server_url is not None and httpx.URL(server_url).scheme == "http"
    with _lock:
        if plain:
            if _trusting_none is None:
                _trusting_none = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, no CAs
            return _trusting_none
        if _default is None:
            _default = httpx.create_ssl_context()
        return _default
