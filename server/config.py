"""Settings of the central service, read from ``QUEUEDESK_*`` environment variables.

Every setting has a working default, so ``queuedesk-server migrate`` on a fresh
machine uses an SQLite file in the platform's user data directory. Set
``QUEUEDESK_DATABASE_URL`` to a ``postgresql+psycopg://`` URL for production.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sync.protocol import HEARTBEAT_S

DEFAULT_DB_FILENAME = "queuedesk.db"


def default_data_dir() -> Path:
    """Where the service keeps its files when nothing else is configured."""
    return Path(platformdirs.user_data_dir("queuedesk", appauthor=False))


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of an SQLite database file."""
    return f"sqlite:///{path}"


class Settings(BaseSettings):
    """The service configuration; field ``x`` is read from ``QUEUEDESK_X``."""

    model_config = SettingsConfigDict(env_prefix="QUEUEDESK_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    # Empty means "an SQLite file in data_dir"; resolved by the validator below.
    database_url: str = ""
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)

    jwt_issuer: str = "queuedesk"
    access_token_ttl_s: int = Field(default=900, ge=1)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=1)
    # A refresh token reused within this many seconds of its rotation is treated
    # as a client retry (two tabs, a lost response), not as token theft.
    refresh_grace_s: int = Field(default=30, ge=0)

    # The live sync stream (GET /sync/stream): seconds between heartbeats, and the
    # longest a stream stays open (it also ends when the caller's token expires);
    # clients reconnect from their cursor.
    sync_heartbeat_s: float = Field(default=HEARTBEAT_S, gt=0)
    sync_stream_max_s: float = Field(default=900.0, gt=0)

    # Seconds between background catch-ups of the report facts with the event log
    # (0: none; reports still catch their branches up before they read).
    kpi_facts_interval_s: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url.strip():
            self.database_url = sqlite_url(self.data_dir / DEFAULT_DB_FILENAME)
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; tests call ``get_settings.cache_clear()``."""
    return Settings()
