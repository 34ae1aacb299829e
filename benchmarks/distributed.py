"""The flights year backfill on two Celery workers against the multiprocess executor, on the
same machine, services and data.

Run as ``.venv/bin/python benchmarks/distributed.py [--quick]`` from the project root, with
PostgreSQL and RabbitMQ running (``--postgres``, ``--broker``). On a temporary
``$ML_ASSETS_HOME`` it starts a moto S3 server, creates a fresh PostgreSQL database for the
Dagster instance (dropped afterwards), lands 2013 with the publisher on S3, then for each side
runs the docs' two commands (``dagster asset materialize`` of the reference tables, then of
the data layers as one single-run backfill), timed from process start to exit
(``backfill.run_measured``):

- **multiprocess**: the platform's default executor (steps forked from a forkserver);
- **celery**: ``ML_ASSETS_EXECUTOR=celery``, each step a task for two ``ml-assets worker``
  processes that each have their own home (started before the timing, as a deployment's
  workers are).

Both sides use the same PostgreSQL instance and S3 landing zone, each its own warehouse prefix.
From the event log: the run's duration (``RUN_START`` to its end), events recorded per
second of it, and each step's start-up (its hand-off, i.e. the process starting or the task
submitted, to ``STEP_START``). Every partition must have the same rows on both sides, and the
raw flights the publisher's, else the exit code is 1; the wall-time ratio is reported, never
an error.

Then an Optuna study of the same budget, seed and data (the tuning benchmark's: flights
features through the pipeline's jobs, the tuning rows as the study asset takes them) two ways
(``tuning.run_once``, the function the asset calls): two local processes sharing a journal
file, and two shares sent to the two Celery workers (``ML_ASSETS_EXECUTOR=celery``) sharing a
study in PostgreSQL. Every study must run its budget with no failed trial, and on Celery each
share on a worker (who claimed it is recorded), else the exit code is 1.

``--kill-worker SECONDS`` SIGKILLs the process group of the worker running the features step
on the Celery side that long into the step: the step must run again on the other worker in the
same run and every partition still match (the wall time then includes the loss).

``--quick`` backfills a week and tunes 4 trials on two weeks: the same code, for the test
suite.
"""

import argparse
import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from statistics import mean
from unittest import mock

from _common import (
    PROJECT_ROOT,
    Checks,
    benchmark_home,
    bytecode_note,
    enter_home,
    load_average,
    partition_keys,
    table,
    window,
)
from backfill import PIPELINE, Measured, _materialize, run_measured, selections
from tuning import WINDOWS, RunResult, build_tuning_data, check_runs, run_once

from ml_assets.executor import BROKER_ENV_VAR, EXECUTOR_ENV_VAR, steps_by_worker
from ml_assets.instance import POSTGRES_ENV_VAR
from ml_assets.processes import stop_groups

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"
BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
BUCKET = "benchmark"
START, END, QUICK_END = date(2013, 1, 1), date(2013, 12, 31), date(2013, 1, 7)
LOCAL_STUDY, CELERY_STUDY = "journal file, 2 processes", "PostgreSQL, 2 Celery workers"
STUDY_TIMEOUT_S = 3600
KILLED_STEP = "flights__flight_features"
RUN_CONFIG = {
    "multiprocess": {"execution": {"config": {"multiprocess": {}}}},
    "celery": {},  # the code location's executor is celery_executor on that side
}


@contextlib.contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """A moto S3 server with an empty bucket; the AWS variables that reach it (test values)."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    aws = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "benchmark",
        "AWS_SECRET_ACCESS_KEY": "benchmark",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(aws)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    try:
        yield aws
    finally:
        server.stop()


@contextlib.contextmanager
def postgres_database(server: str) -> Iterator[str]:
    """A fresh database on ``server``, dropped afterwards."""
    import sqlalchemy

    name = f"benchmark_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(
        f"{server}/postgres", isolation_level="AUTOCOMMIT", pool_pre_ping=True
    )
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def side_env(base: dict[str, str], home: Path, side: str, postgres_url: str, broker: str) -> dict:
    """The environment of one machine of ``side``: its own home and Dagster home, the shared
    instance, landing zone and broker, the side's warehouse."""
    from ml_assets.instance import instance_yaml

    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    env = {
        **base,
        "ML_ASSETS_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        POSTGRES_ENV_VAR: postgres_url,
        "ML_ASSETS_LANDING_URL": f"s3://{BUCKET}/landing",
        "ML_ASSETS_WAREHOUSE_URL": f"s3://{BUCKET}/{side}",
        "ML_ASSETS_ONLINE_STORE_URL": f"s3://{BUCKET}/{side}/online",
    }
    if side == "celery":
        env.update({EXECUTOR_ENV_VAR: "celery", BROKER_ENV_VAR: broker})
    os.environ[POSTGRES_ENV_VAR] = postgres_url
    settings = instance_yaml(dagster_home) + "telemetry:\n  enabled: false\n"
    (dagster_home / "dagster.yaml").write_text(settings)
    return env


@contextlib.contextmanager
def celery_workers(
    root: Path, env: dict[str, str], postgres_url: str, broker: str
) -> Iterator[dict[str, subprocess.Popen]]:
    """Two ``ml-assets worker`` processes, each on its own home, ready for tasks, by name."""
    from kombu import Connection

    with Connection(broker, connect_timeout=5) as connection:  # steps an old run left behind
        connection.ensure_connection(max_retries=1)
        with contextlib.suppress(Exception):
            connection.channel().queue_purge("dagster")
    processes, logs = [], []
    for name in ("w1", "w2"):
        home = root / name
        machine = side_env(env, home, "celery", postgres_url, broker)
        logs.append(home / "worker.log")
        with logs[-1].open("wb") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "ml_assets.cli", "worker", "--name", name],
                cwd=PROJECT_ROOT, env=machine, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            ))  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not all(" ready." in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a Celery worker did not start; see {logs}")
            time.sleep(0.5)
        yield dict(zip(("w1", "w2"), processes, strict=True))
    finally:
        stop_groups(processes, 30)


@contextlib.contextmanager
def killing_mid_step(
    env: dict[str, str], first_day: str, workers: dict[str, subprocess.Popen], after: float | None
) -> Iterator[list[str]]:
    """Unless ``after`` is None, SIGKILL the worker running ``KILLED_STEP`` of the backfill from
    ``first_day`` (its whole process group, as a machine lost) once the step has run ``after``
    seconds; the name, once done."""
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START

    killed: list[str] = []
    if after is None:
        yield killed
        return
    stop = threading.Event()

    def watch() -> None:
        began = None
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            while not stop.wait(0.2):
                runs = instance.get_runs(dg.RunsFilter(tags={RANGE_START: first_day}), limit=1)
                started = runs and steps_by_worker(instance, runs[0].run_id).get(KILLED_STEP)
                if not started or runs[0].status != dg.DagsterRunStatus.STARTED:
                    continue
                began = began or time.monotonic()
                if time.monotonic() - began >= after:
                    killed.append(victim := next(iter(started)))
                    os.killpg(workers[victim].pid, signal.SIGKILL)
                    print(f"killed {victim} {after:g} s into {KILLED_STEP}", flush=True)
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield killed
    finally:
        stop.set()
        watcher.join(10)


def check_retried(env: dict[str, str], first_day: str, killed: list[str], checks: Checks) -> None:
    """The killed step ran again on the other worker, in the same run."""
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs(dg.RunsFilter(tags={RANGE_START: first_day}), limit=1)
        ran_on = steps_by_worker(instance, run.run_id).get(KILLED_STEP, set())
    print(f"{KILLED_STEP} ran on {', '.join(sorted(ran_on))}; killed: {', '.join(killed)}")
    checks.require(len(killed) == 1, f"no worker was killed: {KILLED_STEP} ended before")
    checks.require(ran_on == {"w1", "w2"}, f"{KILLED_STEP} was not retried elsewhere: {ran_on}")


def backfill(home: Path, env: dict[str, str], side: str, days: list[str]) -> Measured:
    """The reference tables, then the data layers over ``days`` as one run; the latter timed."""
    config = home / f"{side}.json"  # JSON is YAML: the side's run config
    config.write_text(json.dumps(RUN_CONFIG[side]))
    reference_tables, data_layers = selections()
    run_measured(_materialize(reference_tables, config), env, home / f"{side}_reference.log")
    return run_measured(
        _materialize(data_layers, config, f"{days[0]}...{days[-1]}"),
        env,
        home / f"{side}_data_layers.log",
    )


def run_figures(env: dict[str, str], first_day: str) -> dict[str, float]:
    """From the event log of the latest run over ``first_day``… in the instance of ``env``:
    its duration, events per second, mean and largest step start-up."""
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG

    types = dg.DagsterEventType
    handoffs = (types.STEP_WORKER_STARTING, types.ENGINE_EVENT)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs(
            filters=dg.RunsFilter(tags={ASSET_PARTITION_RANGE_START_TAG: first_day}), limit=1
        )
        events = [e for e in instance.all_logs(run.run_id) if e.dagster_event]
    started = next(e.timestamp for e in events if e.dagster_event_type == types.RUN_START)
    duration = max(e.timestamp for e in events) - started
    startups = []
    for step in {e.step_key for e in events if e.step_key}:
        mine = [e for e in events if e.step_key == step]
        begun = [e.timestamp for e in mine if e.dagster_event_type == types.STEP_START]
        handed = [e.timestamp for e in mine if e.dagster_event_type in handoffs]
        if begun and handed:
            startups.append(min(begun) - min(handed))
    return {
        "run s": duration,
        "events": len(events),
        "events/s": len(events) / duration,
        "step start-up s (mean)": mean(startups),
        "step start-up s (max)": max(startups),
        "steps": len(startups),
    }


def partition_rows(side: str, days: list[str]) -> dict[tuple[str, str], int]:
    """Rows of every partition of the data layers the side wrote, from the Parquet footers."""
    import pyarrow.parquet as pq

    from resources.paths import read_bytes, to_upath

    rows = {}
    for asset in ("raw_flights", "flights_clean", "flights_rejected", "flight_features"):
        folder = to_upath(f"s3://{BUCKET}/{side}/{PIPELINE}/{asset}")
        for day in days:
            data = read_bytes(folder / f"{day}.parquet")
            rows[asset, day] = pq.read_metadata(io.BytesIO(data)).num_rows
    return rows


def published_rows(days: list[str]) -> dict[str, int]:
    """Flights per day as the publisher lands them."""
    from ml_assets.pipelines.flights.publish import source_table

    flights = source_table("flights")
    day = flights["year"] + "-" + flights["month"].str.zfill(2) + "-" + flights["day"].str.zfill(2)
    counts = day.value_counts()
    return {d: int(counts.get(d, 0)) for d in days}


def _claimants(postgres_url: str, run: RunResult) -> list[str]:
    """Who ran each share of ``run``'s study."""
    from ml_assets.modeling.distributed_study import ShareClaims

    claims = ShareClaims(postgres_url)
    try:
        return sorted(claims.of_study(run.study_name).values())
    finally:
        claims.dispose()


def report_studies(
    studies: dict[str, RunResult], claimants: list[str], trials: int, checks: Checks
) -> None:
    """The two studies side by side, their ratio, and their checks."""
    print(f"\nOptuna study, {trials} trials, 2 workers:")
    print(table(["storage, workers", "wall s", "done/pruned", "trials/min", "start-up s",
                 "best value"], [
        [name, f"{r.wall_s:.1f}", f"{r.completed}/{r.pruned}", f"{r.per_minute:.2f}",
         f"{r.startup_s:.1f}", f"{r.best_value:.4f}"]
        for name, r in studies.items()
    ], disable_numparse=True))  # fmt: skip
    local, celery = studies.values()
    print(f"trials per minute Celery / local: {celery.per_minute / local.per_minute:.2f}; "
          f"shares run by {', '.join(claimants)}")  # fmt: skip
    check_runs(list(studies.values()), trials, checks)
    checks.require(
        len(claimants) == 2 and not any(c.startswith("caller@") for c in claimants),
        f"the Celery study's shares were not both run by the workers: {claimants}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a week (tests)")
    parser.add_argument("--end", type=date.fromisoformat, help="default: 2013-12-31 (quick: 01-07)")
    parser.add_argument("--postgres", default=POSTGRES, help="PostgreSQL server URL, no database")
    parser.add_argument("--broker", default=BROKER, help="RabbitMQ URL")
    parser.add_argument(
        "--kill-worker", type=float, metavar="SECONDS",
        help=f"SIGKILL the Celery worker of {KILLED_STEP} this long into the step",
    )  # fmt: skip
    parser.add_argument("--trials", type=int, help="the study's budget (16; quick 4)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()
    end = args.end or (QUICK_END if args.quick else END)
    with benchmark_home("ml_assets_distributed_", args.keep) as home:
        return benchmark(home, args, partition_keys(PIPELINE, START.isoformat(), end.isoformat()))


def benchmark(home: Path, args: argparse.Namespace, days: list[str]) -> int:
    from ml_assets import pipelines
    from resources.landing_zone import LandingZone

    base = enter_home(home)
    checks = Checks()
    with (
        s3_server() as aws,
        postgres_database(args.postgres) as postgres_url,
        postgres_database(args.postgres) as optuna_url,  # Optuna's schema beside Dagster's clashes
    ):
        base.update(aws)
        began = time.perf_counter()
        pipelines.load(PIPELINE).publish(LandingZone(url=f"s3://{BUCKET}/landing"), days)
        print(f"home {home}; published {len(days)} days to S3 in "
              f"{time.perf_counter() - began:.1f} s")  # fmt: skip
        print(f"load average before: {load_average()}")
        if note := bytecode_note():
            print(note)
        launcher = side_env(base, home / "launcher", "multiprocess", postgres_url, args.broker)
        measured, figures = {}, {}
        measured["multiprocess"] = backfill(home, launcher, "multiprocess", days)
        figures["multiprocess"] = run_figures(launcher, days[0])
        tuning = window(PIPELINE, args.quick, WINDOWS)
        tuning_data, description = build_tuning_data(PIPELINE, tuning)
        print(description)
        trials = args.trials or (4 if args.quick else 16)
        studies = {LOCAL_STUDY: run_once(PIPELINE, 2, trials, STUDY_TIMEOUT_S, tuning_data, home)}
        celery = side_env(base, home / "launcher", "celery", postgres_url, args.broker)
        with celery_workers(home / "workers", base, postgres_url, args.broker) as workers:
            sending = {n: celery[n] for n in (EXECUTOR_ENV_VAR, BROKER_ENV_VAR, POSTGRES_ENV_VAR)}
            with mock.patch.dict(os.environ, sending):  # the study's shares go to the workers
                studies[CELERY_STUDY] = run_once(
                    PIPELINE, 2, trials, STUDY_TIMEOUT_S, tuning_data, home, storage=optuna_url
                )
            with killing_mid_step(celery, days[0], workers, args.kill_worker) as killed:
                measured["celery"] = backfill(home, celery, "celery", days)
        figures["celery"] = run_figures(celery, days[0])
        print(f"load average after: {load_average()}")
        rows = {side: partition_rows(side, days) for side in measured}
        claimants = _claimants(optuna_url, studies[CELERY_STUDY])
        if args.kill_worker is not None:
            check_retried(celery, days[0], killed, checks)
    header = ["executor", "wall s", "launcher CPU s", *figures["celery"]]
    print(f"\n{len(days)} days, data layers as one run:")
    print(table(header, [
        [side, f"{m.wall_s:.1f}", f"{m.cpu_s:.1f}", *(f"{v:.2f}" if isinstance(v, float) else v
                                                      for v in figures[side].values())]
        for side, m in measured.items()
    ], disable_numparse=True))  # fmt: skip
    ratio = measured["celery"].wall_s / measured["multiprocess"].wall_s
    print(f"\nwall ratio celery / multiprocess: {ratio:.2f}")
    startup = figures["celery"]["step start-up s (mean)"]
    print(f"step start-up celery / multiprocess: "
          f"{startup / figures['multiprocess']['step start-up s (mean)']:.2f}")  # fmt: skip
    events = figures["celery"]["events/s"] / figures["multiprocess"]["events/s"]
    print(f"events per second celery / multiprocess: {events:.2f}")
    differing = [k for k in rows["multiprocess"] if rows["celery"][k] != rows["multiprocess"][k]]
    published = published_rows(days)
    wrong_raw = [d for d in days if rows["celery"]["raw_flights", d] != published[d]]
    print(f"partitions compared: {len(days)} days x {len(rows['celery']) // len(days)} assets; "
          f"rows differing between sides: {len(differing)}; raw flights not as published: "
          f"{len(wrong_raw)}; flights {sum(published.values())}")  # fmt: skip
    checks.require(not differing, f"row counts differ: {differing[:5]}")
    checks.require(not wrong_raw, f"raw flights not as published: {wrong_raw[:5]}")
    report_studies(studies, claimants, trials, checks)
    if args.quick:
        print("(quick mode: a week; the figures are the year's on a full run)")
    return checks.report()


if __name__ == "__main__":
    sys.exit(main())
