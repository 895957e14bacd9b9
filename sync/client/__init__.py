"""The sync client: local SQLite cache and outbox, the push/pull/stream engine,
the authenticated session and the keyring-backed credential store. The central
service never imports this package; it shares only :mod:`sync.protocol`.
"""
