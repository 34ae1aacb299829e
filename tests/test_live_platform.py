"""The platform as a user runs it: ``ml-assets dev`` (webserver + daemon) on a fresh home.

``ml-assets dev`` lands the first partitions of every pipeline; the landed files become raw
runs through each pipeline's sensor and automation brings clean and feature partitions up to
date. Then, on flights: a backfill launched the way the UI launches one (GraphQL
``launchPartitionBackfill``) re-materializes the raw and clean layers of a range in one run,
after which automation refreshes the features that read them; the model job launched from the
UI registers a model, and automation deploys it to the service it starts.

The backfill leaves ``flight_features`` out on purpose: Dagster adds to an asset backfill every
downstream partition of the targeted ones, and through the 7-day history mapping that includes
the features of the 7 days after the range, which cannot be computed before those days land.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_assets import pipelines
from ml_assets.home import PROJECT_ROOT
from resources.table_snapshots import MANIFEST
from serving.settings import url_env_var

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
SEEDED = 3
"""``ml-assets dev --seed-partitions``: the first partitions of every pipeline it lands."""
DAYS = ["2013-01-01", "2013-01-02", "2013-01-03"]
DATA_ASSETS = {
    "flights": ["raw_flights", "raw_weather", "flights_clean", "flights_rejected",
                "weather_clean", "weather_rejected", "flight_features"],
    "taxi": ["raw_trips", "trips_clean", "trips_rejected", "trip_features"],
}  # fmt: skip
"""The partitioned tables of each pipeline's data layers, one Parquet file per partition."""
SEEDS = {
    name: pipelines.declaration(name).partitions.definition().get_partition_keys()[:SEEDED]
    for name in DATA_ASSETS
}
BACKFILLED = [name for name in DATA_ASSETS["flights"] if name != "flight_features"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    assert "errors" not in body, body
    return body["data"]


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[int, Path, str]]:
    port = _free_port()
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DAGSTER_", "ML_ASSETS_", "MLFLOW_"))
        },
        "ML_ASSETS_HOME": str(tmp_path),
        # every pipeline's service on a free port: none may meet a service already running
        **{url_env_var(name): f"http://127.0.0.1:{_free_port()}" for name in pipelines.names()},
    }
    log = (tmp_path / "dev.log").open("w")
    command = [sys.executable, "-m", "ml_assets.cli", "dev", "--port", str(port),
               "--seed-partitions", str(SEEDED)]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: _serving(port), 90, "the Dagster webserver")
        yield port, tmp_path, env[url_env_var("flights")]
    finally:
        for service in (tmp_path / "serving").glob("*.pid"):  # started by deployed_endpoint
            os.killpg(int(service.read_text()), signal.SIGTERM)
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _served_version(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/model", timeout=2) as response:
            return json.load(response).get("version")
    except OSError:
        return None


def _serving(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
    except OSError:
        return False
    return True


def _files(home: Path, asset: str, pipeline: str = "flights") -> list[Path]:
    return sorted((home / "warehouse" / pipeline / asset).glob("*.parquet"))


def _partitions(home: Path, asset: str, pipeline: str = "flights") -> set[str]:
    return {p.stem for p in _files(home, asset, pipeline)}


LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""


LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
TINY_MODEL = {
    "ops": {
        "flights__training_set": {
            "config": {
                "window_start": DAYS[0],
                "validation_partitions": 1,
                "test_partitions": 1,
                "min_train_partitions": 1,
            }
        },
        "flights__hyperparameter_study": {"config": {"n_trials": 2, "workers": 1}},
        "flights__model_evaluation": {"config": {"min_improvement_over_baseline": -100.0}},
    }
}
"""Three days of data: train on one, tune on the next, test on the last; any model passes."""


def _tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def _runs(port: int) -> list[dict]:
    data = _graphql(
        port,
        "{ runsOrError(limit: 200) { ... on Runs { results { runId status "
        "tags { key value } assetSelection { path } } } } }",
    )
    return data["runsOrError"]["results"]


def _snapshots(home: Path) -> set[str]:
    """Days with a complete online feature snapshot."""
    root = home / "warehouse" / "online" / "flights" / "online_features"
    return {manifest.parent.name for manifest in root.glob(f"*/{MANIFEST}")}


def _settled(port: int) -> bool:
    """No run is queued or in progress."""
    return all(run["status"] in ("SUCCESS", "FAILURE", "CANCELED") for run in _runs(port))


def _sensor_requests(runs: list[dict], pipeline: str) -> Counter:
    """How often the pipeline's sensor had each (asset, partition) materialized (partition
    None: a reference table), over all its runs, single-partition or range."""
    keys = pipelines.declaration(pipeline).partitions.definition().get_partition_keys()
    requested: Counter = Counter()
    for run in runs:
        if _tag(run, "dagster/sensor_name") != f"{pipeline}_landing_zone_sensor":
            continue
        start, end = _tag(run, RANGE_START), _tag(run, RANGE_END)
        ranged = start is not None and end is not None
        partitions = (
            keys[keys.index(start) : keys.index(end) + 1]
            if ranged
            else [_tag(run, "dagster/partition")]
        )
        for key in run["assetSelection"]:
            requested.update((key["path"][-1], partition) for partition in partitions)
    return requested


def _landed(pipeline: str) -> Counter:
    """What ``ml-assets dev`` landed for ``pipeline``, as (reading asset, partition) pairs."""
    return Counter(
        (f"raw_{s.name}", key) if s.partitioned else (s.name, None)
        for s in pipelines.declaration(pipeline).sources
        for key in (SEEDS[pipeline] if s.partitioned else [None])
    )


def test_sensor_automation_and_ui_backfill(platform: tuple[int, Path, str]) -> None:
    port, home, serving_url = platform
    assert SEEDS["flights"] == DAYS
    _wait_for(
        lambda: (
            all(
                _partitions(home, assets[-1], name) >= set(SEEDS[name])
                for name, assets in DATA_ASSETS.items()
            )
            and _snapshots(home) >= set(DAYS)
            and _settled(port)
        ),
        420,
        "sensor runs then automation to materialize every pipeline's seeded feature partitions",
    )
    for name, assets in DATA_ASSETS.items():
        for asset in assets:
            assert _partitions(home, asset, name) == set(SEEDS[name]), (name, asset)
    runs = _runs(port)
    assert all(run["status"] == "SUCCESS" for run in runs), runs
    for name in DATA_ASSETS:
        # each landed file materialized once, by the pipeline's own sensor; the seeded
        # partitions land before its first tick, so each source is one run
        assert _sensor_requests(runs, name) == _landed(name), name
        sensor = f"{name}_landing_zone_sensor"
        sensor_runs = [r for r in runs if _tag(r, "dagster/sensor_name") == sensor]
        assert len(sensor_runs) == len(pipelines.declaration(name).sources), name

    launched = _graphql(
        port,
        LAUNCH_BACKFILL,
        {
            "params": {
                "assetSelection": [{"path": ["flights", name]} for name in BACKFILLED],
                "partitionNames": DAYS,
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def backfill_done() -> bool:
        status = _graphql(
            port,
            "query($id: String!) { partitionBackfillOrError(backfillId: $id) { "
            "... on PartitionBackfill { status } } }",
            {"id": backfill_id},
        )["partitionBackfillOrError"]["status"]
        assert status not in ("FAILED", "CANCELED"), status
        return status == "COMPLETED_SUCCESS" or status == "COMPLETED"

    _wait_for(backfill_done, 300, "the UI-launched backfill to complete")
    backfill_runs = [r for r in _runs(port) if _tag(r, "dagster/backfill") == backfill_id]
    # single-run backfill policy: one run for the whole range, not one per partition and asset
    assert len(backfill_runs) == 1, backfill_runs
    assert backfill_runs[0]["status"] == "SUCCESS"
    features_before = {p: p.stat().st_mtime_ns for p in _files(home, "flight_features")}
    _wait_for(
        lambda: all(p.stat().st_mtime_ns > mtime for p, mtime in features_before.items()),
        180,
        "automation to refresh the features whose inputs the backfill rewrote",
    )

    launched = _graphql(
        port,
        LAUNCH_RUN,
        {
            "params": {
                "selector": {
                    "repositoryLocationName": "ml_assets",
                    "repositoryName": "__repository__",
                    "jobName": "flights_model",
                },
                "runConfigData": TINY_MODEL,
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def model_run_done() -> bool:
        status = next(r["status"] for r in _runs(port) if r["runId"] == run_id)
        assert status not in ("FAILURE", "CANCELED"), status
        return status == "SUCCESS"

    _wait_for(model_run_done, 300, "the model job launched from the UI")
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) > 0 and not (runs["status"] == "RUNNING").any(), runs[["status"]]
    assert (runs["tags.dagster_run_id"] == run_id).any()

    # automation deploys the new version: the service starts, passes the smoke test and
    # serves it as champion
    registered = mlflow.tracking.MlflowClient().get_model_version_by_alias(
        "flights-arrival-delay", "challenger"
    )

    def deployed() -> bool:
        target = {"path": ["flights", "deployed_endpoint"]}
        deploys = [r for r in _runs(port) if target in (r["assetSelection"] or [])]
        assert all(r["status"] not in ("FAILURE", "CANCELED") for r in deploys), deploys
        return any(r["status"] == "SUCCESS" for r in deploys)

    _wait_for(deployed, 240, "automation to deploy the registered model")
    assert _served_version(serving_url) == str(registered.version)
