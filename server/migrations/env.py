"""Alembic environment of the central service: compares against ``Base.metadata``.

Run through :mod:`server.migrate`, which hands over either an open connection
(``config.attributes["connection"]``) or a URL (``config.attributes["database_url"]``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from server.db import make_engine, parse_database_url
from server.migrate import context_options
from server.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: use server.migrate, which sets one")
    return str(url)


def _check_foreign_keys(connection: Connection) -> None:
    # Migrations run with SQLite foreign keys off (tables are rebuilt); make sure
    # the result is still consistent before the transaction commits.
    if connection.dialect.name != "sqlite":
        return
    broken = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
    if broken:
        raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:5]}")


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        **context_options(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()
        _check_foreign_keys(connection)


def run_migrations_offline() -> None:
    url = parse_database_url(_database_url())
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **context_options(url.get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = make_engine(_database_url(), sqlite_foreign_keys=False)
    try:
        with engine.connect() as conn:
            _run_on(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
