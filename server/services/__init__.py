"""The service layer of the central service: tenancy, RBAC, audit and queue work.

Every function here takes a SQLAlchemy ``Session`` and works inside the caller's
transaction (the caller commits, usually through :func:`server.db.session_scope`).
Nothing here speaks HTTP: routes, the command line and jobs all call these
functions and map their exceptions (:mod:`server.services.errors`,
:class:`core.errors.InvalidValue`) to their own kind of answer.
"""
