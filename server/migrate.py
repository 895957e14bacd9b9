"""Schema migrations with Alembic, configured in code (no alembic.ini at run time).

The migration scripts live in ``server/migrations`` inside the package, so an
installed service can migrate its own database. A new revision is written with
:func:`make_revision` against a database at head, then reviewed by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from server.db import make_engine
from server.models.base import UTCDateTime

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _render_item(type_: str, obj: Any, _context: AutogenContext) -> str | bool:
    # Scripts spell the stored type, so they never import model code that may change.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def context_options(dialect_name: str) -> dict[str, Any]:
    """Options for ``context.configure``; autogenerate comparisons use the same ones."""
    return {
        "compare_type": True,
        "render_item": _render_item,
        # SQLite cannot ALTER most things: Alembic rebuilds the table instead.
        "render_as_batch": dialect_name == "sqlite",
        # Both backends run DDL in a transaction (SQLite through the BEGIN hook
        # of server.db), so a failed upgrade leaves the schema as it was.
        "transactional_ddl": True,
    }


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for ``url`` pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        # Passed as an attribute, not an ini option: a "%" in a password would
        # otherwise be taken for configparser interpolation.
        cfg.attributes["database_url"] = url
    return cfg


def head_revision() -> str:
    """The newest revision this build knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError("no migration revisions found")
    return head


def revisions() -> list[str]:
    """Every revision from the first to head, in upgrade order."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


def _revision_of(connection: Connection) -> str | None:
    revision = MigrationContext.configure(connection).get_current_revision()
    connection.rollback()  # end the read so Alembic begins its own transaction
    return revision


def current_revision(url: str) -> str | None:
    """The revision ``url``'s database is at; None when it was never migrated."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return _revision_of(connection)
    finally:
        engine.dispose()


def _run(url: str, action: str, revision: str) -> tuple[str | None, str | None]:
    # Foreign keys off on SQLite: batch migrations copy tables, and dropping the
    # old copy would cascade or fail; env.py runs foreign_key_check at the end.
    engine = make_engine(url, sqlite_foreign_keys=False)
    try:
        with engine.connect() as connection:
            before = _revision_of(connection)
            cfg = alembic_config(url)
            cfg.attributes["connection"] = connection
            getattr(command, action)(cfg, revision)
            after = _revision_of(connection)
    finally:
        engine.dispose()
    return before, after


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade ``url``'s database to ``revision``; returns (revision before, after)."""
    return _run(url, "upgrade", revision)


def downgrade(url: str, revision: str) -> tuple[str | None, str | None]:
    """Downgrade ``url``'s database to ``revision`` ("base" empties it)."""
    return _run(url, "downgrade", revision)


def make_revision(url: str, message: str) -> str:
    """Autogenerate the next numbered revision from the models; returns its id.

    ``url`` must be a database at head: the new script holds the difference
    between it and the models, to be reviewed before it is committed. Use an
    SQLite database: changes to existing tables then come out as batch
    operations, which run on both backends (plain ALTERs fail on SQLite).
    """
    next_id = f"{int(head_revision()) + 1:04d}"
    engine = make_engine(url, sqlite_foreign_keys=False)
    try:
        with engine.connect() as connection:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = connection
            command.revision(cfg, message=message, autogenerate=True, rev_id=next_id)
    finally:
        engine.dispose()
    return next_id
