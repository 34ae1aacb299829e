"""dagster-postgres's event log storage, keeping one connection per process open."""

import os
import weakref
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)
from sqlalchemy.engine import Engine

UNLIMITED_OVERFLOW = -1
"""Beyond the kept connection, open (and close after use) as many as threads need at once,
as the stock class does: a bounded pool deadlocks when every thread holds one connection and
waits for a second (Dagster nests them, e.g. storing an event)."""
POOL_RECYCLE_S = 3600
_POOLED: "weakref.WeakSet[Engine]" = weakref.WeakSet()
_INHERITED: list[Any] = []
"""A forked child's copies of its parent's pools, kept referenced: closing their connections
would send the server a goodbye on the parent's sockets and end the parent's sessions."""


def _fresh_pools_in_child() -> None:
    """Right after ``fork``, before anything can use (or pre-ping) an inherited connection, give
    each engine a new pool; the child then opens its own connections."""
    for engine in list(_POOLED):
        _INHERITED.append(engine.pool)
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_fresh_pools_in_child)


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
        self._engine = create_pg_engine(
            postgres_url,
            token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=UNLIMITED_OVERFLOW,
            pool_recycle=POOL_RECYCLE_S,
            pool_pre_ping=True,
        )
        _POOLED.add(self._engine)

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
