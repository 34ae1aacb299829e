"""Dagster's SQLite event log storage, keeping its connections open between events."""

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from ml_assets.instance.forking import fork_safe


class KeptOpenSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log storage, keeping one connection per database file open.

    Dagster's own class creates an engine and opens a connection for every statement batch,
    about six per event: the SQLAlchemy statement cache is lost each time and every close
    checkpoints the write-ahead log, so an event costs ~10 ms and a year-long backfill, which
    records ~9,000 events, spends most of its time there. This class keeps, per process, the
    index database and the ``OPEN_RUN_SHARDS`` most recently used run databases open, used
    one thread at a time under the storage's lock as before. Processes still write
    concurrently through SQLite's own locking (WAL mode, busy timeout). A forked child opens
    its own connections and leaves its parent's alone (``forking``).
    """

    OPEN_RUN_SHARDS = 8

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: dict
    ) -> "KeptOpenSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as connection, connection.begin():
                yield connection

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.pop(shard, None) or fork_safe(
            create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
        )
        self._engines[shard] = engine  # most recently used last
        run_shards = [name for name in self._engines if name != INDEX_SHARD_NAME]
        if len(run_shards) > self.OPEN_RUN_SHARDS:
            self._engines.pop(run_shards[0]).dispose()
        return engine

    def _close_all(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._close_all()  # before the run databases are deleted under open connections
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()
