"""The instance profiles: Dagster's storages with event logs that keep their connections open.

Every behaviour is checked on both profiles, the embedded SQLite one and the production one on
the machine's PostgreSQL.
"""

import multiprocessing
import os
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy
import yaml

from ml_assets.instance import POSTGRES_ENV_VAR, instance_yaml
from ml_assets.instance.postgres import PooledPostgresEventLogStorage
from ml_assets.instance.sqlite import KeptOpenSqliteEventLogStorage

pytestmark = pytest.mark.integration

STORAGE = {"sqlite": KeptOpenSqliteEventLogStorage, "postgres": PooledPostgresEventLogStorage}


@pytest.fixture(params=["sqlite", "postgres"])
def profile(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def dagster_home(
    profile: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Path:
    """A ``$DAGSTER_HOME`` holding the profile's ``dagster.yaml`` (on a fresh database)."""
    if profile == "postgres":
        monkeypatch.setenv(POSTGRES_ENV_VAR, request.getfixturevalue("postgres_url"))
    else:
        monkeypatch.delenv(POSTGRES_ENV_VAR, raising=False)
    (tmp_path / "dagster.yaml").write_text(instance_yaml(tmp_path))
    return tmp_path


def _instance(dagster_home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(dagster_home))


@dg.asset(partitions_def=dg.StaticPartitionsDefinition([f"p{n}" for n in range(20)]))
def numbers(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"keys": len(context.partition_keys)})


def _materialize(instance: dg.DagsterInstance, partition: str) -> str:
    result = dg.materialize([numbers], instance=instance, partition_key=partition)
    assert result.success
    return result.run_id


def _held_open(dagster_home: Path) -> int:
    """Database files (SQLite) or server connections (PostgreSQL) the storage holds now."""
    url = os.environ.get(POSTGRES_ENV_VAR)
    if url:
        admin = sqlalchemy.create_engine(url.rsplit("/", 1)[0] + "/postgres")
        with admin.connect() as connection:
            count = connection.execute(
                sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name"),
                {"name": url.rsplit("/", 1)[1]},
            ).scalar_one()
        admin.dispose()
        return count
    files = set()  # SQLite may hold a second descriptor of a file whose lock it keeps
    for fd in os.listdir("/proc/self/fd"):
        try:
            files.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return sum(f.startswith(str(dagster_home)) and f.endswith(".db") for f in files)


def test_instance_yaml_selects_the_profile(dagster_home: Path, profile: str):
    config = yaml.safe_load(instance_yaml(dagster_home))
    assert config["event_log_storage"]["class"] == STORAGE[profile].__name__
    with _instance(dagster_home) as instance:
        assert isinstance(instance.event_log_storage, STORAGE[profile])
        _materialize(instance, "p0")
    if profile == "sqlite":  # Dagster's default layout, so existing homes keep their history
        assert (dagster_home / "history" / "runs.db").exists()
        assert (dagster_home / "history" / "runs" / "index.db").exists()


def test_events_are_seen_by_another_instance_and_few_connections_stay_open(
    dagster_home: Path, profile: str
):
    with _instance(dagster_home) as writer:
        run_ids = [_materialize(writer, f"p{n}") for n in range(12)]
        limit = KeptOpenSqliteEventLogStorage.OPEN_RUN_SHARDS + 1 if profile == "sqlite" else 1
        assert 1 <= _held_open(dagster_home) <= limit
        with _instance(dagster_home) as reader:
            for run_id in run_ids:
                assert reader.get_run_by_id(run_id).is_success
                assert any(e.is_dagster_event for e in reader.all_logs(run_id))
            assert reader.get_materialized_partitions(numbers.key) == {f"p{n}" for n in range(12)}
    assert _held_open(dagster_home) == 0  # closed with the instances


def _materialize_in_child(dagster_home: str, partition: str) -> None:
    with dg.DagsterInstance.from_config(dagster_home) as instance:
        _materialize(instance, partition)


def test_concurrent_processes_and_forked_children_write_safely(dagster_home: Path):
    with _instance(dagster_home) as instance:
        _materialize(instance, "p0")  # this process now holds its connections open
        fork = multiprocessing.get_context("fork")
        children = [
            fork.Process(target=_materialize_in_child, args=(str(dagster_home), f"p{n}"))
            for n in range(1, 5)
        ]
        # forked children that use this process's storage object (and its open connections)
        inherited = [fork.Process(target=_materialize, args=(instance, f"p{n}")) for n in (5, 6)]
        for child in [*children, *inherited]:
            child.start()
        _materialize(instance, "p7")
        for child in [*children, *inherited]:
            child.join(60)
            assert child.exitcode == 0
        _materialize(instance, "p8")
        assert instance.get_materialized_partitions(numbers.key) == {f"p{n}" for n in range(9)}


def test_threads_write_at_once_and_one_connection_stays(dagster_home: Path, profile: str):
    from concurrent.futures import ThreadPoolExecutor

    with _instance(dagster_home) as instance, ThreadPoolExecutor(8) as threads:
        list(threads.map(lambda n: _materialize(instance, f"p{n}"), range(16)))
        assert instance.get_materialized_partitions(numbers.key) == {f"p{n}" for n in range(16)}
        if profile == "postgres":  # connections opened beyond the pool's one were closed
            assert _held_open(dagster_home) == 1


@pytest.mark.parametrize("profile", ["postgres"], indirect=True)
def test_a_connection_the_server_dropped_is_replaced(dagster_home: Path):
    """A server restart closes every connection, the kept one too: the next event opens a new
    one instead of failing on the dead one."""
    url = os.environ[POSTGRES_ENV_VAR]
    with _instance(dagster_home) as instance:
        _materialize(instance, "p0")
        admin = sqlalchemy.create_engine(url.rsplit("/", 1)[0] + "/postgres")
        with admin.connect() as connection:
            dropped = connection.execute(
                sqlalchemy.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name"
                ),
                {"name": url.rsplit("/", 1)[1]},
            ).scalar_one()
        admin.dispose()
        assert dropped >= 1
        _materialize(instance, "p1")
        assert instance.get_materialized_partitions(numbers.key) == {"p0", "p1"}


@pytest.mark.parametrize("profile", ["sqlite"], indirect=True)
def test_wipe_closes_before_deleting(dagster_home: Path):
    with _instance(dagster_home) as instance:
        run_id = _materialize(instance, "p0")
        instance.event_log_storage.wipe()
        assert instance.all_logs(run_id) == []
        _materialize(instance, "p1")
        assert instance.get_materialized_partitions(numbers.key) == {"p1"}


def _write_event(dagster_home: str, run_id: str, written, done) -> None:
    """A step process's write: one event of ``run_id`` through its own instance, whose
    connection stays open while the step goes on (until ``done``)."""
    import time

    from dagster._core.events.log import EventLogEntry

    with dg.DagsterInstance.from_config(dagster_home) as instance:
        for message in ("first", "written"):  # the first creates the run's database
            instance.event_log_storage.store_event(
                EventLogEntry(error_info=None, level="INFO", user_message=message,
                              run_id=run_id, timestamp=time.time())
            )  # fmt: skip
            time.sleep(2)
        written.set()
        done.wait(30)


def test_a_watcher_sees_events_another_process_writes(dagster_home: Path) -> None:
    """What the UI's run page relies on: a watched run's new events reach the watcher."""
    import time
    import uuid

    run_id = str(uuid.uuid4())
    seen: list[str] = []
    with _instance(dagster_home) as instance:
        storage = instance.event_log_storage
        storage.watch(run_id, None, lambda event, cursor: seen.append(event.user_message))
        spawn = multiprocessing.get_context("spawn")
        written, done = spawn.Event(), spawn.Event()
        child = spawn.Process(target=_write_event, args=(str(dagster_home), run_id, written, done))
        child.start()
        assert written.wait(60)
        deadline = time.monotonic() + 10  # while the writer's connection is still open
        while "written" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        # seen before the writer exits: its exit checkpoints the write-ahead log into the
        # database file, which Dagster's own watcher would wait for
        seen_while_open = list(seen)
        done.set()
        child.join(60)
        assert child.exitcode == 0
    assert seen_while_open[-1:] == ["written"]
