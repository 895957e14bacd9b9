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


def test_a_plain_http_server_gets_a_verifying_context_that_trusts_no_authority() -> None:
    """No CA bundle is loaded for http://, and nothing sent to https:// through that client
    could pass verification; an https:// server gets the shared context with the bundle."""
    plain = client_verify(True, "http://127.0.0.1:8000")
    assert isinstance(plain, ssl.SSLContext)
    assert plain is client_verify(True, "HTTP://queue.example:8080/")
    assert plain.verify_mode is ssl.CERT_REQUIRED
    assert plain.check_hostname
    assert plain.cert_store_stats()["x509_ca"] == 0
    secure = client_verify(True, "https://queue.example")
    assert secure is client_verify()
    assert secure.cert_store_stats()["x509_ca"] > 0  # type: ignore[union-attr]
    own = ssl.create_default_context()
    assert client_verify(own, "http://127.0.0.1:8000") is own
    assert client_verify(False, "https://queue.example") is False
