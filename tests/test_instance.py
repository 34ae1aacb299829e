"""The embedded instance: Dagster's SQLite storage with an event log that keeps connections open."""

import multiprocessing
import os
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ml_assets.instance import POSTGRES_ENV_VAR, KeptOpenSqliteEventLogStorage, instance_yaml


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(POSTGRES_ENV_VAR, raising=False)
    (tmp_path / "dagster.yaml").write_text(instance_yaml(tmp_path))
    return tmp_path


def _instance(dagster_home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(dagster_home))


def _open_databases(directory: Path) -> set[str]:
    """The SQLite files under ``directory`` that this process holds open."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)) and target.endswith(".db"):
            found.add(Path(target).name)
    return found


@dg.asset(partitions_def=dg.StaticPartitionsDefinition([f"p{n}" for n in range(20)]))
def numbers(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"keys": len(context.partition_keys)})


def _materialize(instance: dg.DagsterInstance, partition: str) -> str:
    result = dg.materialize([numbers], instance=instance, partition_key=partition)
    assert result.success
    return result.run_id


def test_the_embedded_profile_uses_it_in_dagsters_layout(dagster_home: Path):
    config = yaml.safe_load(instance_yaml(dagster_home))
    assert config["event_log_storage"]["class"] == KeptOpenSqliteEventLogStorage.__name__
    with _instance(dagster_home) as instance:
        assert isinstance(instance.event_log_storage, KeptOpenSqliteEventLogStorage)
        _materialize(instance, "p0")
    assert (dagster_home / "history" / "runs.db").exists()
    assert (dagster_home / "history" / "runs" / "index.db").exists()


def test_production_profile_is_postgres(dagster_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(POSTGRES_ENV_VAR, "postgresql+psycopg2://postgres@127.0.0.1/test")
    assert "postgres" in yaml.safe_load(instance_yaml(dagster_home))["storage"]


def test_events_are_visible_to_another_instance_and_few_files_stay_open(dagster_home: Path):
    with _instance(dagster_home) as writer:
        run_ids = [_materialize(writer, f"p{n}") for n in range(12)]
        open_now = _open_databases(dagster_home)
        assert len(open_now) <= KeptOpenSqliteEventLogStorage.OPEN_RUN_SHARDS + 1
        with _instance(dagster_home) as reader:
            for run_id in run_ids:
                assert reader.get_run_by_id(run_id).is_success
                assert any(e.is_dagster_event for e in reader.all_logs(run_id))
            assert reader.get_materialized_partitions(numbers.key) == {f"p{n}" for n in range(12)}
    assert _open_databases(dagster_home) == set()  # disposed with the instance


def _materialize_in_child(dagster_home: str, partition: str) -> None:
    with dg.DagsterInstance.from_config(dagster_home) as instance:
        _materialize(instance, partition)


def test_concurrent_processes_and_a_forked_child_write_safely(dagster_home: Path):
    with _instance(dagster_home) as instance:
        _materialize(instance, "p0")  # this process now holds the index open
        fork = multiprocessing.get_context("fork")
        children = [
            fork.Process(target=_materialize_in_child, args=(str(dagster_home), f"p{n}"))
            for n in range(1, 5)
        ]
        # a child forked while this process holds connections uses its storage object too
        inherited = fork.Process(target=_materialize, args=(instance, "p5"))
        for child in [*children, inherited]:
            child.start()
        _materialize(instance, "p6")
        for child in [*children, inherited]:
            child.join(60)
            assert child.exitcode == 0
        _materialize(instance, "p7")
        materialized = instance.get_materialized_partitions(numbers.key)
    assert materialized == {f"p{n}" for n in range(8)}


def test_wipe_closes_before_deleting(dagster_home: Path):
    with _instance(dagster_home) as instance:
        run_id = _materialize(instance, "p0")
        instance.event_log_storage.wipe()
        assert instance.all_logs(run_id) == []
        _materialize(instance, "p1")
        assert instance.get_materialized_partitions(numbers.key) == {"p1"}
