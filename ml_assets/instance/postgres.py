"""dagster-postgres's event log storage, keeping one connection per process open."""

from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

from ml_assets.instance.forking import fork_safe

UNLIMITED_OVERFLOW = -1
"""Beyond the kept connection, open (and close after use) as many as threads need at once,
as the stock class does: a bounded pool deadlocks when every thread holds one connection and
waits for a second (Dagster nests them, e.g. storing an event)."""
POOL_RECYCLE_S = 3600


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres's event log storage with a connection pool instead of none.

    The stock class connects anew for every operation so that no process holds an idle
    connection (SQLAlchemy ``NullPool``); a connection to PostgreSQL costs ~2.4 ms here, an event
    several connections, and a year-long backfill ~8,500 events. This keeps one connection per
    process open (more only while threads overlap), as Dagster's webserver does for itself.
    A connection is never used across ``fork``: a forked child opens its own.
    """

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._engine.dispose()
        self._engine = fork_safe(
            create_pg_engine(
                postgres_url,
                token_provider,
                isolation_level="AUTOCOMMIT",
                pool_size=1,
                max_overflow=UNLIMITED_OVERFLOW,
                pool_recycle=POOL_RECYCLE_S,
                pool_pre_ping=True,
            )
        )

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()  # the stock class holds no connection, so it never does this

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> "PooledPostgresEventLogStorage":
        return cls(  # as the stock class reads its config
            pg_url_from_config(config_value),
            config_value.get("should_autocreate_tables", True),
            inst_data,
            get_token_provider_from_config(config_value),
        )
