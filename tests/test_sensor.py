"""The landing-zone sensor: the fewest runs for new or changed files, with the clean and feature
partitions they determine; nothing run twice, nothing lost."""

import json
import logging
import os
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.sensor_definition import SensorExecutionData
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.scheduler.instigation import InstigatorType, SensorInstigatorData, TickStatus
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.sensor import execute_sensor_iteration
from dagster._time import get_current_datetime

from ml_assets.contract.dagster_terms import partitions_definition
from ml_assets.definitions import defs
from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.assets import data_assets, key
from ml_assets.pipelines.flights.publish import day_keys, publish
from ml_assets.platform import IN_PROCESS
from resources.builder import platform_resources
from resources.landing_zone import LandingZone
from sensors.landing_zone import (
    RANGE_END,
    RANGE_START,
    LandedSource,
    build_landing_zone_sensor,
    landed_sources,
)
from sensors.partition_runs import contiguous_ranges

pytestmark = pytest.mark.unit

landing_zone_sensor = defs.resolve_sensor_def("flights_landing_zone_sensor")

WEEK = [(date(2013, 1, 1) + timedelta(days=n)).isoformat() for n in range(8)]
EXPECTED_WEEK = (
    {(key("raw_flights"), day) for day in WEEK}
    | {(key("raw_weather"), day) for day in WEEK}
    | {(key(name), None) for name in config.REFERENCE_TABLES}
)
"""(asset, partition) of every file a freshly published week lands."""
LANDED = {key("raw_flights"), key("raw_weather"), *(key(name) for name in config.REFERENCE_TABLES)}
"""The assets that read landed files."""
DOWNSTREAM = [
    key(name)
    for name in ("flights_clean", "flights_rejected", "weather_clean", "weather_rejected",
                 "flight_features", "online_features")
]  # fmt: skip
"""What the landed files alone determine, in the order the sensor adds it to a run."""


class Ticker:
    """Evaluates a sensor tick after tick the way the daemon does, threading the cursor."""

    def __init__(
        self,
        sensor: dg.SensorDefinition,
        landing_zone: LandingZone,
        instance: dg.DagsterInstance,
    ) -> None:
        self.sensor = sensor
        self.landing_zone = landing_zone
        self.instance = instance
        self.definitions = dg.Definitions(
            assets=data_assets,
            sensors=[sensor],
            resources={**platform_resources([config.DECLARATION]), "landing_zone": landing_zone},
        )
        self.cursor: str | None = None
        self.run_keys: list[str] = []
        """Every run key requested so far, in order, across all ticks."""

    def tick(self, cursor: str | None = None) -> list[dg.RunRequest]:
        """One evaluation from ``cursor`` (default: the last tick's); returns its run requests."""
        context = dg.build_sensor_context(
            cursor=cursor if cursor is not None else self.cursor,
            resources={"landing_zone": self.landing_zone},
            instance=self.instance,
            definitions=self.definitions,
        )
        result: SensorExecutionData = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        requests = list(result.run_requests or [])
        self.run_keys.extend(r.run_key for r in requests)
        return requests


def covered(
    requests: list[dg.RunRequest], assets: set[dg.AssetKey] = LANDED
) -> list[tuple[dg.AssetKey, str | None]]:
    """(asset, partition) of every partition of ``assets`` the requests materialize, ranges
    expanded; reference tables (unpartitioned) as partition None."""
    keys = partitions_definition(config.DECLARATION.partitions).get_partition_keys()
    tables = {key(name) for name in config.REFERENCE_TABLES}
    result = []
    for request in requests:
        if RANGE_START in request.tags:
            first, last = keys.index(request.tags[RANGE_START]), keys.index(request.tags[RANGE_END])
            partitions = keys[first : last + 1]
        else:
            partitions = [request.partition_key]
        for asset in request.asset_selection or []:
            if asset in assets:
                result.extend((asset, k) for k in ([None] if asset in tables else partitions))
    return result


def targets(requests: list[dg.RunRequest]) -> set[tuple[dg.AssetKey, str | None]]:
    """What the requests read from the landing zone."""
    return set(covered(requests))


def downstream(request: dg.RunRequest) -> list[dg.AssetKey]:
    """The assets a request adds to those reading landed files."""
    return [k for k in request.asset_selection or [] if k not in LANDED]


def flights_sources() -> list[LandedSource]:
    """The flights pipeline's landed sources, as its sensor declares them."""
    return landed_sources(config.DECLARATION)


def touch_forward(path: str, seconds: float = 10.0) -> None:
    """Move a file's mtime forward so the listing signature changes however coarse the clock."""
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + int(seconds * 1e9)))


@pytest.fixture(scope="session")
def week_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference tables and 2013-01-01 … 2013-01-08, published once for the session."""
    template = tmp_path_factory.mktemp("landing_template")
    publish(LandingZone(url=str(template)), day_keys(date(2013, 1, 1), date(2013, 1, 8)))
    return template


@pytest.fixture
def published_week(landing_zone: LandingZone, week_template: Path) -> LandingZone:
    """Overrides conftest's fixture with a copy of the same files (publishing costs ~1 s)."""
    shutil.copytree(week_template, landing_zone.url, dirs_exist_ok=True)
    return landing_zone


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """Overrides conftest's: sensor ticks store nothing, so an in-memory instance will do."""
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def ticker(landing_zone: LandingZone, instance: dg.DagsterInstance) -> Ticker:
    return Ticker(landing_zone_sensor, landing_zone, instance)


def test_a_landed_week_is_one_range_run_with_its_clean_and_feature_layers(
    published_week: LandingZone, ticker: Ticker
):
    """Both sources' daily files are one single-run range; the reference tables ride along
    (the features read them), and so do the clean and feature partitions of the week."""
    requests = ticker.tick()

    assert len(requests) == 1
    (week,) = requests
    assert sorted(covered(requests), key=str) == sorted(EXPECTED_WEEK, key=str)
    assert downstream(week) == DOWNSTREAM
    assert (week.tags[RANGE_START], week.tags[RANGE_END]) == (WEEK[0], WEEK[-1])
    assert week.partition_key is None
    assert week.tags["landing_zone/files"] == str(2 * 8 + len(config.REFERENCE_TABLES))
    assert week.run_key.startswith(
        "flights+weather+planes+airports+airlines/2013-01-01...2013-01-08:"
    )


def test_a_range_request_materializes_every_partition_in_one_run(
    published_week: LandingZone, ticker: Ticker, resources: dict, instance: dg.DagsterInstance
):
    (week,) = ticker.tick()

    result = materialize(week, resources, instance)

    materialized = {(e.asset_key, e.partition) for e in result.get_asset_materialization_events()}
    assert set(covered([week], LANDED | set(DOWNSTREAM))) == materialized
    assert {p for k, p in materialized if k == key("flight_features")} == set(WEEK)


def materialize(
    request: dg.RunRequest, resources: dict, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """Run ``request`` as the daemon would (its selection, partition and tags)."""
    result = dg.materialize(
        data_assets, selection=request.asset_selection, partition_key=request.partition_key,
        tags=request.tags, resources=resources, instance=instance,
    )  # fmt: skip
    assert result.success
    return result


def test_a_new_day_after_its_history_runs_with_its_features(
    published_week: LandingZone, ticker: Ticker, resources: dict, instance: dg.DagsterInstance
):
    """The daily case: a day lands after the week it reads as history was materialized; one
    run materializes its raw, clean and feature partitions, in process."""
    materialize(ticker.tick()[0], resources, instance)
    publish(published_week, day_keys(date(2013, 1, 9), date(2013, 1, 9)))

    (day,) = ticker.tick()

    assert day.partition_key == "2013-01-09"
    assert targets([day]) == {(key("raw_flights"), day.partition_key),
                              (key("raw_weather"), day.partition_key)}  # fmt: skip
    assert downstream(day) == DOWNSTREAM
    assert day.run_config == IN_PROCESS
    materialize(day, resources, instance)


def test_features_wait_for_automation_when_their_history_is_missing(
    landing_zone: LandingZone, ticker: Ticker
):
    """A day whose trailing week never landed gets its raw and clean partitions; its features
    are left to automation, which requests them once the history exists."""
    publish(landing_zone, ["2013-01-20"])

    (day,) = ticker.tick()

    assert downstream(day) == DOWNSTREAM[:4]


def test_features_wait_when_a_day_they_read_failed_its_blocking_check(
    published_week: LandingZone, ticker: Ticker, resources: dict, instance: dg.DagsterInstance
):
    """A corrupt day in the history blocks the features of the days that read it, as
    automation's blocking-check condition does."""
    publish(published_week, ["2013-01-05"], fault="missing-column")
    first = ticker.tick()
    for request in first:
        dg.materialize(
            data_assets, selection=request.asset_selection, tags=request.tags,
            resources=resources, instance=instance, raise_on_error=False,
        )  # fmt: skip
    publish(published_week, ["2013-01-09"])

    (day,) = ticker.tick()

    assert downstream(day) == DOWNSTREAM[:4]


def test_gaps_split_the_landed_days_into_ranges(landing_zone: LandingZone, ticker: Ticker) -> None:
    publish(landing_zone, [*day_keys(date(2013, 1, 1), date(2013, 1, 3)), "2013-01-06"])

    flights = [r for r in ticker.tick() if key("raw_flights") in r.asset_selection]

    assert [(r.tags.get(RANGE_START), r.tags.get(RANGE_END), r.partition_key) for r in flights] == [
        ("2013-01-01", "2013-01-03", None),
        (None, None, "2013-01-06"),
    ]


@pytest.mark.parametrize(
    ("keys", "ranges"),
    [
        ([], []),
        (["b"], [["b"]]),
        (["c", "a", "b"], [["a", "b", "c"]]),
        (["a", "c", "e", "d"], [["a"], ["c", "d", "e"]]),
    ],
)
def test_contiguous_ranges_follow_the_partition_order(keys: list[str], ranges: list) -> None:
    order = {k: i for i, k in enumerate("abcdef")}
    assert contiguous_ranges(keys, order) == ranges


def test_unchanged_files_request_nothing_and_are_not_reread(
    published_week: LandingZone, ticker: Ticker, monkeypatch: pytest.MonkeyPatch
):
    """A second tick over the same files asks for nothing and hashes no file again."""
    ticker.tick()
    first_cursor = ticker.cursor
    hashed: list[tuple[str, str]] = []
    original = LandingZone.content_hash

    def counting_hash(self: LandingZone, source: str, name: str, ext: str = ".csv") -> str:
        hashed.append((source, name))
        return original(self, source, name, ext)

    monkeypatch.setattr(LandingZone, "content_hash", counting_hash)

    assert ticker.tick() == []
    assert hashed == []
    assert ticker.cursor == first_cursor


def test_changed_file_requests_exactly_one_new_run_per_file(
    published_week: LandingZone, ticker: Ticker
):
    """A corrected re-export runs again, under a new run key; untouched files do not."""
    first = {r.run_key for r in ticker.tick()}

    # Republishing a day rewrites its flights and weather files with duplicated rows, and the
    # reference tables with the very same bytes.
    publish(published_week, day_keys(date(2013, 1, 3), date(2013, 1, 3)), fault="duplicate-rows")
    requests = ticker.tick()

    assert targets(requests) == {
        (key("raw_flights"), "2013-01-03"),
        (key("raw_weather"), "2013-01-03"),
    }
    assert all(r.run_key not in first for r in requests)
    assert [r.run_key.split(":")[0] for r in requests] == [
        "flights+weather/2013-01-03...2013-01-03"
    ]
    cursor = json.loads(ticker.cursor)
    assert cursor["flights/2013-01-03"]["version"] == cursor["weather/2013-01-03"]["version"] == 2
    assert ticker.tick() == []


def test_one_changed_file_is_one_run(published_week: LandingZone, ticker: Ticker):
    """Changing one file's bytes requests that file's partition and nothing else."""
    ticker.tick()
    original = published_week.read_bytes("flights", "2013-01-05")
    published_week.write_bytes("flights", "2013-01-05", original + original.split(b"\n", 2)[1])

    requests = ticker.tick()

    assert targets(requests) == {(key("raw_flights"), "2013-01-05")}
    assert len(set(ticker.run_keys)) == len(ticker.run_keys) == 2


def test_touched_file_without_new_content_requests_nothing(
    published_week: LandingZone, ticker: Ticker
):
    """Rewriting the same bytes changes the listing signature but not what landed."""
    ticker.tick()
    before = {f.name: f.stat_signature for f in published_week.list_files("weather")}
    path = published_week.write_bytes(
        "weather", "2013-01-04", published_week.read_bytes("weather", "2013-01-04")
    )
    touch_forward(path)
    after = {f.name: f.stat_signature for f in published_week.list_files("weather")}
    assert after["2013-01-04"] != before["2013-01-04"]

    assert ticker.tick() == []
    # The new signature is remembered, so the next tick does not hash the file again.
    assert json.loads(ticker.cursor)["weather/2013-01-04"]["signature"] == after["2013-01-04"]
    assert ticker.tick() == []


def test_restart_from_stored_cursor_requests_nothing(
    published_week: LandingZone, landing_zone: LandingZone, instance: dg.DagsterInstance
):
    """A new process (new sensor object, new context) resumes from the stored cursor string."""
    first = Ticker(landing_zone_sensor, landing_zone, instance)
    first.tick()
    stored: str = first.cursor

    restarted = Ticker(
        build_landing_zone_sensor("flights_landing_zone_sensor", flights_sources()),
        landing_zone,
        instance,
    )
    assert restarted.tick(cursor=stored) == []

    # and it still notices what changes after the restart
    publish(published_week, day_keys(date(2013, 1, 8), date(2013, 1, 8)), fault="duplicate-rows")
    assert targets(restarted.tick()) == {
        (key("raw_flights"), "2013-01-08"),
        (key("raw_weather"), "2013-01-08"),
    }


def test_reverted_content_runs_each_time_with_distinct_run_keys(
    published_week: LandingZone, ticker: Ticker
):
    """A -> B -> A is three contents over time: three runs, three run keys (A is not skipped)."""
    content_a = published_week.read_bytes("flights", "2013-01-02")
    content_b = content_a + content_a.split(b"\n", 2)[1]
    keys_for_day: list[str] = []
    versions: list[tuple[int, str]] = []

    for content in (None, content_b, content_a):
        if content is not None:
            path = published_week.write_bytes("flights", "2013-01-02", content)
            touch_forward(path)
        requests = [
            r for r in ticker.tick()
            if (key("raw_flights"), "2013-01-02") in targets([r])
        ]  # fmt: skip
        assert len(requests) == 1
        keys_for_day.append(requests[0].run_key)
        day = json.loads(ticker.cursor)["flights/2013-01-02"]
        versions.append((day["version"], day["content"]))

    assert len(set(keys_for_day)) == 3
    assert [v for v, _ in versions] == [1, 2, 3]
    assert versions[0][1] == versions[2][1]  # the same content, run again


STRAY_FILES = [
    ("flights", "notes"),
    ("flights", "2014-05-01"),  # after the last partition
    ("weather", "2012-12-31"),  # before the first partition
    ("weather", "2013-1-5"),  # not in the partition key format
]


def test_files_that_name_no_partition_are_ignored(published_week: LandingZone, ticker: Ticker):
    """Stray files in a partitioned folder are skipped (and remembered), not a crash."""
    for source, name in STRAY_FILES:
        published_week.write_bytes(source, name, b"a,b\n1,2\n")

    requests = ticker.tick()

    assert targets(requests) == EXPECTED_WEEK
    cursor = json.loads(ticker.cursor)
    for source, name in STRAY_FILES:
        assert all(name not in r.run_key for r in requests)
        assert f"{source}/{name}" in cursor
    assert ticker.tick() == []


def test_more_files_than_max_runs_per_tick_arrive_over_several_ticks(
    landing_zone: LandingZone, instance: dg.DagsterInstance
):
    """With a cap of 3 runs per tick, 5 separate days arrive over 2 ticks and a day landed
    mid-way on the third: every file exactly once, none lost."""
    days = ["2013-01-01", "2013-01-03", "2013-01-05", "2013-01-07", "2013-01-09"]
    publish(landing_zone, days)
    landing_zone.write_bytes("flights", "notes", b"not a partition\n")
    capped = Ticker(
        build_landing_zone_sensor("capped", flights_sources(), max_runs_per_tick=3),
        landing_zone,
        instance,
    )

    sizes: list[int] = []
    seen: list[tuple[dg.AssetKey, str | None]] = []
    while requests := capped.tick():
        sizes.append(len(requests))
        seen.extend(covered(requests))
        # A file landed mid-way is picked up too, once.
        if len(sizes) == 2:
            publish(landing_zone, ["2013-01-11"])
        assert len(sizes) < 20, "the sensor never drained the landing zone"

    assert sizes == [3, 2, 1]
    expected = {(key(name), None) for name in config.REFERENCE_TABLES} | {
        (key(raw), day) for raw in ("raw_flights", "raw_weather") for day in [*days, "2013-01-11"]
    }
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == expected
    assert len(set(capped.run_keys)) == len(capped.run_keys)


@pytest.fixture
def queued_instance(home: Path) -> Iterator[dg.DagsterInstance]:
    """An instance that queues launched runs instead of executing them."""
    overrides = {
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
        }
    }
    with dg.instance_for_test(overrides=overrides) as instance:
        yield instance


CODE_LOCATION = """
import dagster as dg

from ml_assets.definitions import defs as platform
from ml_assets.pipelines.flights.assets import data_assets
from ml_assets.home import online_store_url
from resources.landing_zone import default_landing_zone
from resources.table_snapshot_store import TableSnapshotStore

defs = dg.Definitions(
    assets=data_assets,
    sensors=[platform.resolve_sensor_def("flights_landing_zone_sensor")],
    resources={
        "landing_zone": default_landing_zone(),
        "online_store": TableSnapshotStore(base_url=online_store_url()),
    },
)
"""
"""The flights sensor in a code location loaded in process, reading the test's landing zone."""


def test_daemon_skips_run_keys_it_has_already_launched(
    landing_zone: LandingZone, queued_instance: dg.DagsterInstance, tmp_path: Path
):
    """If the cursor is lost, the sensor daemon still launches no run key twice.

    Runs the sensor daemon's own tick function against an in-process code location.
    """
    publish(landing_zone, day_keys(date(2013, 1, 1), date(2013, 1, 1)))  # five files: one run
    logger = logging.getLogger("test_sensor_daemon")
    location_file = tmp_path / "location.py"
    location_file.write_text(CODE_LOCATION)
    target = InProcessWorkspaceLoadTarget(
        InProcessCodeLocationOrigin(
            LoadableTargetOrigin(python_file=str(location_file), attribute="defs"),
            location_name="flights_test",
        )
    )
    now = get_current_datetime()
    with create_test_daemon_workspace_context(target, queued_instance) as workspace:
        with freeze_time(now):
            list(execute_sensor_iteration(workspace, logger, None, None))
        first_runs = queued_instance.get_runs()
        assert len(first_runs) == 1
        assert len({r.tags["dagster/run_key"] for r in first_runs}) == len(first_runs)

        # Lose the cursor, as if the sensor were reset, then tick again past the interval.
        state = next(
            s
            for s in queued_instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
            if s.name == landing_zone_sensor.name
        )
        data = state.instigator_data
        assert isinstance(data, SensorInstigatorData) and data.cursor
        queued_instance.update_instigator_state(
            state.with_data(
                SensorInstigatorData(
                    last_tick_timestamp=data.last_tick_timestamp,
                    last_run_key=None,
                    min_interval=data.min_interval,
                    cursor=None,
                    last_sensor_start_timestamp=data.last_sensor_start_timestamp,
                    sensor_type=data.sensor_type,
                )
            )
        )
        with freeze_time(now + timedelta(seconds=landing_zone_sensor.minimum_interval_seconds + 1)):
            list(execute_sensor_iteration(workspace, logger, None, None))

    assert len(queued_instance.get_runs()) == len(first_runs)
    ticks = queued_instance.get_ticks(state.instigator_origin_id, state.selector_id)
    assert [t.status for t in ticks] == [TickStatus.SKIPPED, TickStatus.SUCCESS]
    assert set(ticks[0].run_keys) == {r.tags["dagster/run_key"] for r in first_runs}
