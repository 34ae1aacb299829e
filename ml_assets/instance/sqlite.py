"""Dagster's SQLite event log storage, keeping its connections open between events."""

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from dagster._core.event_api import EventHandlerFn
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool
from watchdog.events import FileSystemEvent
from watchdog.observers import Observer

from ml_assets.instance.forking import fork_safe


class _RunLogWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's watcher of one run's database, also woken by its write-ahead log.

    With connections kept open, a run's events land in ``<run_id>.db-wal`` and reach
    ``<run_id>.db`` only at a checkpoint (when the last connection closes, or the log grows
    past 1,000 pages): watching the database file alone, the UI's run page would stop at the
    first event until the run's processes exit.
    """

    RECHECK_SECONDS = 0.25

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._patterns = [self._log_path, f"{self._log_path}-wal"]
        self._reading = threading.Lock()
        self._recheck: threading.Timer | None = None

    def _process_log(self) -> None:
        with self._reading:  # the file events' thread and the recheck timer: one at a time
            super()._process_log()

    def on_modified(self, event: FileSystemEvent) -> None:
        self._process_log()
        # A commit's last file write precedes the update of the log's index (shared memory,
        # which raises no file event): read once more after it, or the last event waits for
        # the next write.
        if self._recheck is None or not self._recheck.is_alive():
            self._recheck = threading.Timer(self.RECHECK_SECONDS, self._process_log)
            self._recheck.daemon = True
            self._recheck.start()


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

    def watch(self, run_id: str, cursor: str | None, callback: EventHandlerFn) -> None:
        """Follow a run's events as they are written (see ``_RunLogWatchdog``)."""
        if not self._obs:
            self._obs = Observer()
            self._obs.start()
        watchdog = _RunLogWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (
            watchdog,
            self._obs.schedule(watchdog, self._base_dir, recursive=True),
        )

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
