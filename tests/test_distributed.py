"""Steps on Celery workers (``ML_ASSETS_EXECUTOR=celery``), against the real services: the
machine's RabbitMQ and PostgreSQL, and S3 (a moto server).

Two workers (``ml-assets worker``) each have their own home and Dagster home, as separate
machines would: they share only PostgreSQL (runs and events), S3 (landing zone and warehouse)
and the broker. The run is launched as a user launches it, with ``dagster asset materialize``.
"""

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import boto3
import dagster as dg
import numpy as np
import pandas as pd
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START
from pydantic import TypeAdapter

from ml_assets.contract.model_format import Features
from ml_assets.contract.search_space import FamilySpace
from ml_assets.executor import (
    BROKER_ENV_VAR,
    EXECUTOR_ENV_VAR,
    celery_app,
    steps_by_worker,
)
from ml_assets.home import (
    HOME_ENV_VAR,
    LANDING_ENV_VAR,
    ONLINE_STORE_ENV_VAR,
    PROJECT_ROOT,
    WAREHOUSE_ENV_VAR,
)
from ml_assets.instance import POSTGRES_ENV_VAR, instance_yaml
from ml_assets.modeling import distributed_study
from ml_assets.modeling.distributed_study import ShareClaims
from ml_assets.modeling.study import run_study
from ml_assets.modeling.trials import StudySettings
from ml_assets.pipelines.flights.publish import day_keys, publish, source_table
from ml_assets.processes import stop_groups
from resources.landing_zone import LandingZone
from resources.optuna_storage import OPTUNA_STORAGE_ENV_VAR

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
WEEK = day_keys(date(2013, 1, 1), date(2013, 1, 7))
MONTH = day_keys(date(2013, 1, 1), date(2013, 1, 31))
"""From the first day: a feature partition reads the week before it."""
DATA_LAYERS = 'key:"flights/raw_*" or group:flights_clean or group:flights_features'
REFERENCE_TABLES = 'group:flights_ingest and not key:"flights/raw_*"'


def _purge_queue() -> None:
    """Steps a killed earlier run left on the broker would be picked up by these workers."""
    from kombu import Connection

    with Connection(BROKER, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=1)  # a broker that is down fails here, loudly
        with contextlib.suppress(Exception):  # the queue does not exist yet
            connection.channel().queue_purge("dagster")


def _machine(
    root: Path, name: str, postgres_url: str, optuna_url: str, bucket: str
) -> dict[str, str]:
    """The environment of one "machine": its own home and Dagster home, the shared services."""
    home = root / name
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    env = {
        **os.environ,
        HOME_ENV_VAR: str(home),
        "DAGSTER_HOME": str(dagster_home),
        POSTGRES_ENV_VAR: postgres_url,
        OPTUNA_STORAGE_ENV_VAR: optuna_url,
        EXECUTOR_ENV_VAR: "celery",
        BROKER_ENV_VAR: BROKER,
        LANDING_ENV_VAR: f"s3://{bucket}/landing",
        WAREHOUSE_ENV_VAR: f"s3://{bucket}/warehouse",
        ONLINE_STORE_ENV_VAR: f"s3://{bucket}/online",
    }
    (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    return env


@pytest.fixture
def workers(
    tmp_path: Path, postgres_url: str, optuna_postgres_url: str, s3_bucket: str
) -> Iterator[tuple[dict[str, str], list[subprocess.Popen]]]:
    """Two Celery workers and the launcher's environment."""
    _purge_queue()
    processes = []
    for i in (1, 2):
        env = _machine(tmp_path, f"worker-{i}", postgres_url, optuna_postgres_url, s3_bucket)
        log = (tmp_path / f"worker-{i}.log").open("wb")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "ml_assets.cli", "worker", "--name", f"w{i}"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        ))  # fmt: skip
    launcher = _machine(tmp_path, "launcher", postgres_url, optuna_postgres_url, s3_bucket)
    try:
        yield launcher, processes
    finally:
        stop_groups(processes, 30)


def _materialize(env: dict[str, str], selection: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "ml_assets.definitions",
         "--select", selection, *extra],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_a_week_backfill_runs_its_steps_on_two_celery_workers(
    workers: tuple[dict[str, str], list[subprocess.Popen]],
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launcher, _ = workers
    _land_and_build_references(launcher, s3_bucket, WEEK)
    week = _materialize(launcher, DATA_LAYERS, "--partition-range", f"{WEEK[0]}...{WEEK[-1]}")
    assert week.returncode == 0, week.stderr[-3000:]
    _assert_every_partition_once(s3_bucket, WEEK)

    with _launcher_instance(launcher, monkeypatch) as instance:
        [run] = instance.get_runs(filters=dg.RunsFilter(tags={RANGE_START: WEEK[0]}), limit=1)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        hosts = set().union(*steps_by_worker(instance, run.run_id).values())
    assert hosts == {"w1", "w2"}, hosts
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in (1, 2)]
    assert all(secret not in text for text in [*logs, week.stdout, week.stderr])
    assert secret not in _everything_recorded(launcher, monkeypatch)
    for i in (1, 2):  # the workers wrote nothing to their own disks
        home = tmp_path / f"worker-{i}"
        assert not (home / "warehouse").exists() and not (home / "landing").exists()


def _everything_recorded(launcher: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Every run's config, tags and events in the instance, as text."""
    with _launcher_instance(launcher, monkeypatch) as instance:
        parts = []
        for run in instance.get_runs():
            parts += [repr(run.run_config), repr(run.tags)]
            parts += [repr(r.event_log_entry) for r in instance.get_records_for_run(
                run.run_id, limit=100_000).records]  # fmt: skip
        return "\n".join(parts)


@contextlib.contextmanager
def _launcher_instance(
    launcher: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance as the launcher sees it (PostgreSQL)."""
    monkeypatch.setenv(POSTGRES_ENV_VAR, launcher[POSTGRES_ENV_VAR])
    instance = dg.DagsterInstance.from_config(launcher["DAGSTER_HOME"])
    try:
        yield instance
    finally:
        instance.dispose()


def _land_and_build_references(launcher: dict[str, str], bucket: str, days: list[str]) -> None:
    """Publish ``days`` and the reference tables, and materialize the tables on the workers."""
    publish(LandingZone(url=f"s3://{bucket}/landing"), days)
    tables = _materialize(launcher, REFERENCE_TABLES)
    assert tables.returncode == 0, tables.stderr[-3000:]


def _backfill(launcher: dict[str, str], days: list[str]) -> subprocess.Popen:
    """The data layers' single-run backfill of ``days``, launched as a user launches it."""
    return subprocess.Popen(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "ml_assets.definitions",
         "--select", DATA_LAYERS, "--partition-range", f"{days[0]}...{days[-1]}"],
        cwd=PROJECT_ROOT, env=launcher, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _worker_of_step(instance: dg.DagsterInstance, first_day: str, step: str) -> str:
    """The worker that started ``step`` of the backfill from ``first_day``, once it did."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={RANGE_START: first_day}), limit=1)
        if runs and (started := steps_by_worker(instance, runs[0].run_id).get(step)):
            return next(iter(started))
        time.sleep(0.2)
    raise AssertionError(f"{step} never started")


def _published_rows(days: list[str]) -> dict[str, int]:
    """Flights per day as the publisher landed them (the embedded profile's raw rows)."""
    flights = source_table("flights")
    day = flights["year"] + "-" + flights["month"].str.zfill(2) + "-" + flights["day"].str.zfill(2)
    counts = day.value_counts()
    return {d: int(counts.get(d, 0)) for d in days}


def _written_rows(bucket: str, asset: str, days: list[str]) -> dict[str, int]:
    """Rows of each partition of ``asset`` in the warehouse on S3."""
    s3 = boto3.client("s3")
    rows = {}
    for day in days:
        body = s3.get_object(Bucket=bucket, Key=f"warehouse/flights/{asset}/{day}.parquet")
        rows[day] = len(pd.read_parquet(io.BytesIO(body["Body"].read())))
    return rows


def _assert_every_partition_once(bucket: str, days: list[str]) -> None:
    """Raw flights per partition equal the published ones; features one row per clean flight."""
    assert _written_rows(bucket, "raw_flights", days) == _published_rows(days)
    assert _written_rows(bucket, "flight_features", days) == _written_rows(
        bucket, "flights_clean", days
    )


def test_a_worker_killed_mid_step_loses_nothing(
    workers: tuple[dict[str, str], list[subprocess.Popen]],
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGKILL the worker running the month's feature step: the broker gives the task (acked
    only when done) to the other worker, the run succeeds, and every partition is written
    once, with the rows of the month."""
    launcher, processes = workers
    _land_and_build_references(launcher, s3_bucket, MONTH)
    run = _backfill(launcher, MONTH)
    with _launcher_instance(launcher, monkeypatch) as instance:
        victim = _worker_of_step(instance, MONTH[0], "flights__flight_features")
        os.killpg(processes[int(victim[1:]) - 1].pid, signal.SIGKILL)
        _, errors = run.communicate(timeout=600)
        assert run.returncode == 0, errors[-3000:]
        [done] = instance.get_runs(filters=dg.RunsFilter(tags={RANGE_START: MONTH[0]}), limit=1)
        assert done.status == dg.DagsterRunStatus.SUCCESS
        survivor = {"w1", "w2"} - {victim}
        assert steps_by_worker(instance, done.run_id)["flights__flight_features"] == {
            victim,
            *survivor,
        }
        materialized = instance.get_materialized_partitions(
            dg.AssetKey(["flights", "flight_features"])
        )
        assert set(MONTH) <= materialized
    _assert_every_partition_once(s3_bucket, MONTH)
    assert sum(_published_rows(MONTH).values()) == 27_004


def _restart_postgres() -> float:
    """Restart the machine's PostgreSQL (every connection dropped); it is up again afterwards
    whatever happens. The seconds it took."""
    [version] = [path.name for path in Path("/etc/postgresql").iterdir()]
    cluster = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
    began = time.monotonic()
    try:
        subprocess.run([*cluster, "restart"], check=True, capture_output=True, timeout=120)
    finally:
        if subprocess.run([*cluster, "status"], capture_output=True).returncode != 0:
            subprocess.run([*cluster, "start"], check=True, capture_output=True, timeout=120)
    return time.monotonic() - began


def _restart_rabbitmq() -> float:
    """Restart the RabbitMQ application (connections closed, transient queues gone, durable
    queues and persistent messages kept); it is up again afterwards whatever happens."""
    began = time.monotonic()
    try:
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    return time.monotonic() - began


def test_postgresql_restarted_mid_run_loses_nothing(
    workers: tuple[dict[str, str], list[subprocess.Popen]],
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Restart PostgreSQL (runs, events and the steps' results) while the week's clean step
    runs on a worker: the run succeeds, or fails saying what it lost; relaunching the same
    backfill, as a user would, then completes, with every partition's rows once."""
    launcher, _ = workers
    run = _backfill_until_clean_step_runs(launcher, s3_bucket, monkeypatch)
    errors = _after_restart(run, _restart_postgres)
    if run.returncode != 0:
        again = _materialize(launcher, DATA_LAYERS, "--partition-range", f"{WEEK[0]}...{WEEK[-1]}")
        assert again.returncode == 0, again.stderr[-3000:]
    with _launcher_instance(launcher, monkeypatch) as instance:
        [latest] = instance.get_runs(filters=dg.RunsFilter(tags={RANGE_START: WEEK[0]}), limit=1)
        assert latest.status == dg.DagsterRunStatus.SUCCESS, errors
    _assert_every_partition_once(s3_bucket, WEEK)


def test_rabbitmq_restarted_mid_run_loses_no_step(
    workers: tuple[dict[str, str], list[subprocess.Popen]],
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Restart RabbitMQ while the week's clean step runs on a worker: the run succeeds by
    itself. The steps' results wait in PostgreSQL, not on the broker; tasks submitted meanwhile
    are published once it is back; the clean step, whose acknowledgement was lost with the
    connection so the broker delivered it again, ran once, and every partition is written once."""
    launcher, _ = workers
    run = _backfill_until_clean_step_runs(launcher, s3_bucket, monkeypatch)
    errors = _after_restart(run, _restart_rabbitmq)
    assert run.returncode == 0, errors
    with _launcher_instance(launcher, monkeypatch) as instance:
        [done] = instance.get_runs(filters=dg.RunsFilter(tags={RANGE_START: WEEK[0]}), limit=1)
        assert done.status == dg.DagsterRunStatus.SUCCESS
        events = [
            record.event_log_entry.dagster_event
            for record in instance.get_records_for_run(done.run_id, limit=100_000).records
            if record.event_log_entry.dagster_event
        ]
    started = Counter(e.step_key for e in events if e.event_type == dg.DagsterEventType.STEP_START)
    assert started and set(started.values()) == {1}, started
    written = Counter(
        (e.asset_key, e.partition)
        for e in events
        if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    assert written and set(written.values()) == {1}, written
    _assert_every_partition_once(s3_bucket, WEEK)
    logs = "".join((tmp_path / f"worker-{i}.log").read_text() for i in (1, 2))
    deliveries = Counter(re.findall(r"Task execute_plan\[([0-9a-f-]+)\] received", logs))
    assert max(deliveries.values(), default=0) > 1, "no running task was delivered again"


def _backfill_until_clean_step_runs(
    launcher: dict[str, str], bucket: str, monkeypatch: pytest.MonkeyPatch
) -> subprocess.Popen:
    """The week's backfill, launched once its inputs are in place; returned once its clean
    step has started on a worker."""
    _land_and_build_references(launcher, bucket, WEEK)
    run = _backfill(launcher, WEEK)
    with _launcher_instance(launcher, monkeypatch) as instance:
        _worker_of_step(instance, WEEK[0], "flights__clean_flights")
    return run


def _after_restart(run: subprocess.Popen, restart: Callable[[], float]) -> str:
    """Restart a service with ``restart`` and wait for ``run`` to end; its standard error."""
    seconds = restart()
    try:
        _, errors = run.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        run.kill()
        raise AssertionError("the run hung after the restart") from None
    print(f"\nrestart took {seconds:.1f} s; the run exited {run.returncode}:\n{errors[-2000:]}")
    return errors[-3000:]


def test_a_study_shares_its_trials_between_the_workers(
    workers: tuple[dict[str, str], list[subprocess.Popen]],
    optuna_postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """With steps on Celery and the study in PostgreSQL, each worker's share of the trials is
    a task: both idle workers claim one, the caller runs none, the budget is met exactly."""
    launcher, _ = workers
    for name in (EXECUTOR_ENV_VAR, BROKER_ENV_VAR, POSTGRES_ENV_VAR):
        monkeypatch.setenv(name, launcher[name])
    monkeypatch.setattr(distributed_study, "CLAIM_GRACE_S", 30.0)  # idle workers claim at once
    _wait_for_workers(celery_app(), 2)
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"x": rng.normal(size=400), "kind": rng.choice(["a", "b"], size=400)})
    data["y"] = 3 * data["x"] + (data["kind"] == "a") + rng.normal(scale=0.1, size=400)
    data["split"] = np.where(np.arange(400) < 300, "train", "validation")
    space = TypeAdapter(list[FamilySpace]).validate_python(
        [{"family": "ridge", "alpha": {"type": "float", "low": 0.01, "high": 10, "log": True}}]
    )
    settings = StudySettings(
        study_name="shared", storage=optuna_postgres_url, n_trials=5, timeout_seconds=300,
        workers=2, seed=0,
    )  # fmt: skip
    study, numbers = run_study(
        settings, space, Features(["kind"], ["x"]), data, "y", "regression", "mae", tmp_path
    )
    assert len(numbers) == 5 and len(study.trials) == 5
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    claims = ShareClaims(optuna_postgres_url)
    claimants = claims.of_study("shared").values()
    claims.dispose()
    assert sorted(claimant.split("@")[0] for claimant in claimants) == ["w1", "w2"]


def _wait_for_workers(app, count: int) -> None:
    """Until ``count`` workers answer a ping."""
    deadline = time.monotonic() + 120
    try:
        while len(app.control.ping(timeout=1)) < count:
            assert time.monotonic() < deadline, "the workers did not start"
    finally:
        app.close()


def test_the_study_step_on_a_worker_shares_its_trials_with_the_other(
    workers: tuple[dict[str, str], list[subprocess.Popen]],
    s3_bucket: str,
    optuna_postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The hyperparameter study materialized on Celery: its step holds one worker, so the
    other worker claims one share and the step runs the other itself; the budget is met."""
    launcher, _ = workers
    days = day_keys(date(2013, 1, 1), date(2013, 1, 14))
    _land_and_build_references(launcher, s3_bucket, days)
    data = _materialize(launcher, DATA_LAYERS, "--partition-range", f"{days[0]}...{days[-1]}")
    assert data.returncode == 0, data.stderr[-3000:]
    config = tmp_path / "study.yaml"
    config.write_text(json.dumps({"ops": {
        "flights__training_set": {"config": {
            "window_start": "2013-01-08", "window_end": days[-1], "validation_partitions": 2,
            "test_partitions": 1, "min_train_partitions": 4,
        }},
        "flights__hyperparameter_study": {"config": {"n_trials": 4, "workers": 2}},
    }}))  # fmt: skip
    study = _materialize(
        launcher, 'key:"flights/training_set" or key:"flights/hyperparameter_study"',
        "--config", str(config),
    )  # fmt: skip
    assert study.returncode == 0, study.stderr[-3000:]
    with _launcher_instance(launcher, monkeypatch) as instance:
        event = instance.get_latest_materialization_event(
            dg.AssetKey(["flights", "hyperparameter_study"])
        )
        assert event is not None and event.asset_materialization is not None
        metadata = event.asset_materialization.metadata
        [step_worker] = steps_by_worker(instance, event.run_id)["flights__hyperparameter_study"]
    assert metadata["trials_this_run"].value == 4
    claims = ShareClaims(optuna_postgres_url)
    claimants = sorted(c.split("@")[0] for c in claims.of_study(metadata["study"].value).values())
    claims.dispose()
    assert claimants == sorted(["caller", ({"w1", "w2"} - {step_worker}).pop()]), claimants
