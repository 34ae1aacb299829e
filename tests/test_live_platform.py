"""The platform as a newcomer runs it: ``make run`` (``ml-assets dev``) on an empty home.

``ml-assets dev`` lands what every pipeline's first model needs; each pipeline's sensor turns
the landed files into raw runs, automation brings the clean and feature layers up to date,
trains, registers and deploys the first model, and the README's request gets a prediction,
with nothing launched by hand. Then, on flights: a backfill launched the way the UI launches
one (GraphQL ``launchPartitionBackfill``) re-materializes the raw and clean layers of a range
in one run, after which automation refreshes the features that read them; and the model job
launched from the UI registers a new version that automation deploys.

The backfill leaves ``flight_features`` out on purpose: Dagster adds to an asset backfill every
downstream partition of the targeted ones, and through the 7-day history mapping that includes
the features of the 7 days after the range, which the seeding has not landed.

The deadlines are about eight times what each step takes on an idle machine (a backfill 75 s,
the model job 70 s, a correction's readers 45 s): under ``make test`` the line-coverage tracer
doubles the platform's work and the other worker's tests share the two cores. A test that misses
one fails; the figures it prints are the measure, not the deadline.
"""

import time
from collections import Counter
from datetime import date, timedelta

import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START
from live import (
    FirstModels,
    LivePlatform,
    post_json,
    readme_requests,
    tag,
    wait_for,
)

from ml_assets import pipelines
from ml_assets.cli import first_model_partitions
from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from resources.table_snapshots import MANIFEST

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA_ASSETS = {
    "flights": ["raw_flights", "raw_weather", "flights_clean", "flights_rejected",
                "weather_clean", "weather_rejected", "flight_features"],
    "taxi": ["raw_trips", "trips_clean", "trips_rejected", "trip_features"],
    "ridership": ["raw_boardings", "boardings_clean", "boardings_rejected", "day_features"],
}  # fmt: skip
"""The partitioned tables of each pipeline's data layers, one Parquet file per partition."""
SEEDS = {
    name: partitions_definition(pipelines.declaration(name).partitions).get_partition_keys()[
        : first_model_partitions(name)
    ]
    for name in DATA_ASSETS
}
"""What ``make run`` lands on an empty home: what each pipeline's first model needs."""
WINDOW_START = pipelines.declaration("flights").model.training.window_start
BACKFILL_DAYS = ["2013-01-01", "2013-01-02", "2013-01-03"]
BACKFILLED = [name for name in DATA_ASSETS["flights"] if name != "flight_features"]


def _sensor_runs(runs: list[dict], pipeline: str) -> list[tuple[dict, list[str | None]]]:
    """The runs of the pipeline's sensor for what ``ml-assets dev`` landed, each with the
    partitions it covers (None: a reference table); later tests may land more."""
    keys = partitions_definition(pipelines.declaration(pipeline).partitions).get_partition_keys()
    covered = []
    for run in runs:
        if tag(run, "dagster/sensor_name") != f"{pipeline}_landing_zone_sensor":
            continue
        start, end = tag(run, RANGE_START), tag(run, RANGE_END)
        partitions = (
            keys[keys.index(start) : keys.index(end) + 1]
            if start is not None and end is not None
            else [tag(run, "dagster/partition")]
        )
        if partitions[0] is None or partitions[0] in SEEDS[pipeline]:
            covered.append((run, partitions))
    return covered


def _sensor_requests(runs: list[dict], pipeline: str) -> Counter:
    """How often the pipeline's sensor had each (asset, partition) materialized, over all its
    runs of the seeded files, single-partition or range (partition None: a reference table)."""
    tables = {s.name for s in pipelines.declaration(pipeline).sources if not s.partitioned}
    requested: Counter = Counter()
    for run, partitions in _sensor_runs(runs, pipeline):
        for key in run["assetSelection"]:
            name = key["path"][-1]
            requested.update([(name, None)] if name in tables else ((name, p) for p in partitions))
    return requested


def _landed(pipeline: str) -> Counter:
    """What ``ml-assets dev`` landed for ``pipeline``, as (reading asset, partition) pairs."""
    return Counter(
        (f"raw_{s.name}", key) if s.partitioned else (s.name, None)
        for s in pipelines.declaration(pipeline).sources
        for key in (SEEDS[pipeline] if s.partitioned else [None])
    )


def _snapshots(platform: LivePlatform) -> set[str]:
    """Days with a complete online feature snapshot."""
    root = platform.home / "warehouse" / "online" / "flights" / "online_features"
    return {manifest.parent.name for manifest in root.glob(f"*/{MANIFEST}")}


def test_a_newcomer_gets_predictions_with_nothing_launched_by_hand(
    first_models: FirstModels,
) -> None:
    platform = first_models.platform
    assert set(first_models.seconds_to_prediction) == set(pipelines.names())
    runs = platform.runs()
    launched_by = Counter(
        "sensor" if tag(run, "dagster/sensor_name") else "backfill" if tag(run, "dagster/backfill")
        else "by hand"
        for run in runs
    )  # fmt: skip
    assert launched_by["by hand"] == 0, launched_by
    first_runs = [run for name in DATA_ASSETS for run, _ in _sensor_runs(runs, name)]
    assert all(run["status"] == "SUCCESS" for run in first_runs), first_runs
    for name, assets in DATA_ASSETS.items():
        for asset in assets:
            assert platform.partitions(name, asset) >= set(SEEDS[name]), (name, asset)
        # each landed file materialized once, by the pipeline's own sensor, with the clean and
        # feature partitions it alone determines; the seeded partitions land before its first
        # tick, so they are one run
        requested = _sensor_requests(runs, name)
        assert set(_landed(name)) <= set(requested), name
        assert set(requested.values()) == {1}, name
        assert len(_sensor_runs(runs, name)) == 1, name
    assert _snapshots(platform) >= set(SEEDS["flights"][-7:])

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{platform.home / 'mlflow' / 'mlflow.db'}")
    tracked = mlflow.search_runs(search_all_experiments=True)
    assert len(tracked) > 0 and not (tracked["status"] == "RUNNING").any(), tracked[["status"]]
    client = mlflow.tracking.MlflowClient()
    for name in pipelines.names():
        champion = client.get_model_version_by_alias(
            pipelines.declaration(name).model.registered_model_name, "champion"
        )
        assert _served_version(platform, name) == str(champion.version), name


def test_the_readmes_requests_are_answered_without_warnings(first_models: FirstModels) -> None:
    """The README's ``curl`` bodies, sent to what ``make run`` starts: a prediction each, none
    with a warning (a flights date outside the loaded snapshot would get one)."""
    platform = first_models.platform
    for name, request in readme_requests().items():
        answer = post_json(f"{platform.serving_url(name)}/predict", request)
        assert [p["warnings"] for p in answer["predictions"]] == [[]], (name, answer)


def _rollout(platform: LivePlatform, pipeline: str) -> dict:
    """``GET /model``'s rollout state (empty while the service does not answer)."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{platform.serving_url(pipeline)}/model", timeout=2) as r:
            return json.load(r).get("rollout") or {}
    except OSError:
        return {}


def _clean_rows(platform: LivePlatform):
    """The rows of the last seeded flights day, as the requests asset holds them."""
    from resources.parquet_io_manager import read_partition

    declaration = pipelines.declaration("flights")
    requests = asset_key(declaration, declaration.serving.requests_asset)
    return read_partition(str(platform.home / "warehouse"), requests, SEEDS["flights"][-1])


def _served_version(platform: LivePlatform, pipeline: str) -> str | None:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{platform.serving_url(pipeline)}/model", timeout=2) as r:
            return json.load(r).get("version")
    except OSError:
        return None


LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""


def test_a_backfill_launched_as_the_ui_does_is_one_run_then_features_refresh(
    first_models: FirstModels,
) -> None:
    platform = first_models.platform
    features_before = {
        p: p.stat().st_mtime_ns
        for p in platform.files("flights", "flight_features")
        if p.stem in BACKFILL_DAYS
    }
    launched = platform.graphql(
        LAUNCH_BACKFILL,
        {
            "params": {
                "assetSelection": [{"path": ["flights", name]} for name in BACKFILLED],
                "partitionNames": BACKFILL_DAYS,
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def backfill_done() -> bool:
        status = platform.graphql(
            "query($id: String!) { partitionBackfillOrError(backfillId: $id) { "
            "... on PartitionBackfill { status } } }",
            {"id": backfill_id},
        )["partitionBackfillOrError"]["status"]
        assert status not in ("FAILED", "CANCELED"), status
        return status in ("COMPLETED_SUCCESS", "COMPLETED")

    wait_for(backfill_done, 600, "the UI-launched backfill to complete")
    backfill_runs = [r for r in platform.runs() if tag(r, "dagster/backfill") == backfill_id]
    # single-run backfill policy: one run for the whole range, not one per partition and asset
    assert len(backfill_runs) == 1, backfill_runs
    assert backfill_runs[0]["status"] == "SUCCESS"
    wait_for(
        lambda: all(p.stat().st_mtime_ns > mtime for p, mtime in features_before.items()),
        360,
        "automation to refresh the features whose inputs the backfill rewrote",
    )


LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
_WINDOW_END = (date.fromisoformat(WINDOW_START) + timedelta(days=2)).isoformat()
TINY_MODEL = {
    "ops": {
        "flights__training_set": {
            "config": {
                "window_start": WINDOW_START,
                "window_end": _WINDOW_END,
                "validation_partitions": 1,
                "test_partitions": 1,
                "min_train_partitions": 1,
            }
        },
        "flights__hyperparameter_study": {"config": {"n_trials": 2, "workers": 1}},
        "flights__model_evaluation": {
            "config": {"min_improvement_over_baseline": -100.0, "max_regression_vs_champion": 1e6}
        },
    }
}
"""Three days: train on one, tune on the next, test on the last; any model passes its gates."""


def test_the_model_job_launched_from_the_ui_is_deployed_by_automation(
    first_models: FirstModels,
) -> None:
    platform = first_models.platform
    launched = platform.graphql(
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
        status = next(r["status"] for r in platform.runs() if r["runId"] == run_id)
        assert status not in ("FAILURE", "CANCELED"), status
        return status == "SUCCESS"

    wait_for(model_run_done, 600, "the model job launched from the UI")
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{platform.home / 'mlflow' / 'mlflow.db'}")
    tracked = mlflow.search_runs(search_all_experiments=True)
    assert not (tracked["status"] == "RUNNING").any(), tracked[["status"]]
    assert (tracked["tags.dagster_run_id"] == run_id).any()
    declaration = pipelines.declaration("flights")
    registered = mlflow.tracking.MlflowClient().get_model_version_by_alias(
        declaration.model.registered_model_name, "challenger"
    )
    version = str(registered.version)
    champion = _served_version(platform, "flights")
    wait_for(
        lambda: (_rollout(platform, "flights").get("challenger") or {}).get("version") == version,
        480,
        "automation to deploy the registered model in shadow",
    )
    assert _served_version(platform, "flights") == champion  # a shadow never answers
    # the shadow's requests; then the daemon's rollout sensor decides (the new model is tiny:
    # on the outcomes these dated requests have, it may well be rolled back)
    items = pipelines.serving_hooks("flights").request_items(_clean_rows(platform))
    for item in items[: declaration.rollout.shadow_requests]:
        post_json(f"{platform.serving_url('flights')}/predict", item, 10)
    wait_for(
        lambda: _rollout(platform, "flights").get("stage") != "shadow",
        240,
        "the rollout sensor to take the shadow on",
    )
    stage = _rollout(platform, "flights")
    client = mlflow.tracking.MlflowClient()
    tag = client.get_model_version(declaration.model.registered_model_name, version).tags
    assert (stage["stage"], tag["rollout_stage"]) in (
        ("canary", "canary"),
        ("full", "rolled_back"),
    ), (stage, tag)


CORRECTED_DAY = SEEDS["flights"][40]
READERS = SEEDS["flights"][41:48]
"""The days whose features read the corrected day as history (the 7 days after it)."""


CORRECTED_MONTH = SEEDS["ridership"][17]
READER_MONTH = SEEDS["ridership"][18]
"""The month whose days read the corrected month's last two weeks (lags of 7 and 14 days)."""


def _runs_per_partition(runs: list[dict], pipeline: str, asset: str) -> Counter:
    """How often ``runs`` targeted each partition of the pipeline's ``asset`` (range or
    single)."""
    keys = SEEDS[pipeline]
    counted: Counter = Counter()
    for run in runs:
        if not any(k["path"] == [pipeline, asset] for k in run["assetSelection"] or []):
            continue
        start, end = tag(run, RANGE_START), tag(run, RANGE_END)
        if start and end:
            counted.update(keys[keys.index(start) : keys.index(end) + 1])
        elif partition := tag(run, "dagster/partition"):
            counted[partition] += 1
    return counted


def _refreshed_once(
    platform: LivePlatform,
    before: set[str],
    pipeline: str,
    assets: list[str],
    partitions: list[str],
) -> None:
    """Once the platform settles: every run since ``before`` succeeded, and together they
    targeted each of ``partitions`` of each of the pipeline's ``assets`` once, no other."""
    wait_for(platform.settled, 600, "the refresh runs to finish")
    runs = [run for run in platform.runs() if run["runId"] not in before]
    assert all(run["status"] == "SUCCESS" for run in runs), runs
    for asset in assets:
        assert _runs_per_partition(runs, pipeline, asset) == Counter(partitions), asset


def _carrier_flights(platform: LivePlatform, day: str) -> float:
    from resources.parquet_io_manager import read_partition

    declaration = pipelines.declaration("flights")
    features = read_partition(
        str(platform.home / "warehouse"), asset_key(declaration, "flight_features"), day
    )
    return float(features["carrier_flights_7d"].sum())


def _rides_lag_14(platform: LivePlatform, month: str) -> float:
    from resources.parquet_io_manager import read_partition

    declaration = pipelines.declaration("ridership")
    features = read_partition(
        str(platform.home / "warehouse"), asset_key(declaration, "day_features"), month
    )
    return float(features["rides_lag_14"].sum())


def test_corrections_refresh_every_partition_that_reads_them_once(
    first_models: FirstModels,
) -> None:
    """Issue 24, landed together while the daemon runs: a corrected re-export of one flights day
    and a ridership month re-exported with its last week's counts revised. The landing sensor
    ingests each in one run that also rewrites that partition's features (the case Dagster's
    ``any_deps_updated`` drops); each pipeline's history-refresh sensor then refreshes the
    features and online snapshots of the partitions that read it as history (the 7 days after
    the day, the month after the month), once each, and nothing else."""
    from ml_assets.pipelines.flights.publish import publish as publish_flights
    from ml_assets.pipelines.ridership.publish import publish as publish_ridership
    from resources.landing_zone import LandingZone

    platform = first_models.platform
    wait_for(platform.settled, 600, "the platform to settle before the corrections")
    before = {run["runId"] for run in platform.runs()}
    features = {p.stem: p.stat().st_mtime_ns for p in platform.files("flights", "flight_features")}
    months = {p.stem: p.stat().st_mtime_ns for p in platform.files("ridership", "day_features")}
    snapshots = platform.home / "warehouse" / "online" / "flights" / "online_features"
    snapshot_mtime = {day: (snapshots / day / MANIFEST).stat().st_mtime_ns for day in READERS}
    carrier_flights = {day: _carrier_flights(platform, day) for day in READERS}
    lag_sum = _rides_lag_14(platform, READER_MONTH)

    landing = LandingZone(url=str(platform.home / "landing"))
    publish_flights(landing, [CORRECTED_DAY], fault="corrupt-lines")
    publish_ridership(landing, [CORRECTED_MONTH], fault="revised-counts")
    landed = time.monotonic()

    def refreshed(pipeline: str, asset: str, partition: str, before: dict[str, int]) -> bool:
        path = platform.home / "warehouse" / pipeline / asset / f"{partition}.parquet"
        return path.stat().st_mtime_ns > before[partition]

    wait_for(
        lambda: all(refreshed("flights", "flight_features", d, features) for d in READERS),
        360,
        "the readers' features",
    )
    print(f"\ncorrected day -> its last reader's features: {time.monotonic() - landed:.1f} s")
    wait_for(
        lambda: refreshed("ridership", "day_features", READER_MONTH, months), 360, "next month"
    )
    print(f"revised month -> the next month's features: {time.monotonic() - landed:.1f} s")
    # the corrected partition (the landing run) and its readers (the history-refresh sensor)
    # once each, nothing else
    _refreshed_once(
        platform,
        before,
        "flights",
        ["flight_features", "online_features"],
        [CORRECTED_DAY, *READERS],
    )
    _refreshed_once(
        platform,
        before,
        "ridership",
        ["day_features", "recent_days"],
        [CORRECTED_MONTH, READER_MONTH],
    )
    untouched = set(features) - {CORRECTED_DAY, *READERS}
    assert not any(refreshed("flights", "flight_features", d, features) for d in untouched)
    assert {m for m in months if refreshed("ridership", "day_features", m, months)} == {
        CORRECTED_MONTH,
        READER_MONTH,
    }
    assert all((snapshots / d / MANIFEST).stat().st_mtime_ns > m for d, m in snapshot_mtime.items())
    # the rewritten features read the corrected partitions: the day's damaged lines are no
    # flights any more; the next month's first days read the revised week, 14 days later
    assert all(_carrier_flights(platform, day) < carrier_flights[day] for day in READERS)
    assert _rides_lag_14(platform, READER_MONTH) > lag_sum
