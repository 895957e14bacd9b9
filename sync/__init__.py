"""The sync protocol and its client side.

``sync.protocol`` holds the wire schemas shared with the central service. The rest
is the client: the local SQLite cache with its outbox, the push/pull/stream engine
over httpx, the authenticated session and the credential store backed by the OS
keyring. It builds on ``core`` and never imports ``server`` or ``desktop``.
"""
