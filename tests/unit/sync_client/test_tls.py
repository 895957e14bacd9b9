"""The console's HTTP clients share one verifying TLS context."""

from __future__ import annotations

import ssl

from sync.client.tls import client_verify


def test_the_default_is_one_shared_verifying_context() -> None:
    first, second = client_verify(), client_verify(True)
    assert isinstance(first, ssl.SSLContext)
    assert first is second
    assert first.verify_mode is ssl.CERT_REQUIRED
    assert first.check_hostname


def test_an_explicit_choice_is_kept() -> None:
    own = ssl.create_default_context()
    assert client_verify(own) is own
    assert client_verify(False) is False
