"""The central multi-tenant QueueDesk service.

FastAPI application, SQLAlchemy models and Alembic migrations, authentication,
roles and permissions, tenancy, the sync endpoints, webhooks, notifications,
alerts, the audit log, backups and the ``queuedesk-server`` command line. It runs
the rules of ``core`` and shares only the wire schemas of ``sync.protocol``.
"""
