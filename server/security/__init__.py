"""Security primitives of the QueueDesk central service.

Password hashing, signed access tokens and their key ring, opaque refresh tokens
and their rotation policy, API keys, the tamper-evident audit chain and login
throttling. Every module here is pure: it takes plain values and touches neither
the database nor the network, so routes and repositories decide where the state
lives.
"""
