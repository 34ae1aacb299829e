"""Automation of the clean and feature layers, evaluated tick by tick against real runs.

Each test materializes the way the platform does (the landing sensor's runs, the runs automation
would launch) and asks ``evaluate_automation_conditions`` what the next tick would request, and
the history-refresh sensor what it would request (the partitions stale only through the history
they read).
"""

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from dagster._core.storage.dagster_run import DagsterRunStatus

from ml_assets.automation import RANGE_END, RANGE_START
from ml_assets.contract.dagster_terms import partitions_definition
from ml_assets.data.clean_and_rejected import CLEAN_SCHEMA
from ml_assets.data.sources.ingest import LANDED_FILE_SCHEMA
from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.assets import data_assets, key
from ml_assets.pipelines.flights.publish import day_keys, publish
from ml_assets.platform import IN_PROCESS
from resources.landing_zone import LandingZone
from sensors.history_refresh import build_history_refresh_sensor

pytestmark = pytest.mark.unit

REFERENCE = dg.AssetSelection.assets(*(key(name) for name in config.REFERENCE_TABLES))
RAW = dg.AssetSelection.assets(key("raw_flights"), key("raw_weather"))
DAILY = partitions_definition(config.DECLARATION.partitions)
DAILY_INGEST_AND_CLEAN = dg.AssetSelection.groups("flights_ingest", "flights_clean") - REFERENCE
FLIGHTS_CLEAN = dg.AssetSelection.assets(key("flights_clean"), key("flights_rejected"))
LANDING_RUN = dg.AssetSelection.groups("flights_ingest", "flights_clean", "flights_features")
"""What one run of the landing sensor writes for a day whose history is in place."""
CLEAN = ("flights_clean", "flights_rejected", "weather_clean", "weather_rejected")
ALL_KEYS = [asset_key for assets_def in data_assets for asset_key in assets_def.keys]


@pytest.fixture
def fast_instance() -> Iterator[dg.DagsterInstance]:
    """An in-memory instance: same storage schema as SQLite on disk, without an fsync per event."""
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


HISTORY_REFRESH = build_history_refresh_sensor([config.DECLARATION], run_config=IN_PROCESS)


class Automation:
    """Ticks the automation conditions of the data assets and the history-refresh sensor,
    threading their cursors."""

    def __init__(self, resources: dict, instance: dg.DagsterInstance) -> None:
        self.defs = dg.Definitions(
            assets=data_assets, sensors=[HISTORY_REFRESH], resources=resources
        )
        self.resources = resources
        self.instance = instance
        self.cursor: AssetDaemonCursor | None = None
        self.sensor_cursor: str | None = None

    def refresh(self) -> list[dg.RunRequest]:
        """One tick of the history-refresh sensor; its run requests."""
        context = dg.build_sensor_context(
            cursor=self.sensor_cursor, instance=self.instance, definitions=self.defs
        )
        result = HISTORY_REFRESH.evaluate_tick(context)
        self.sensor_cursor = result.cursor
        return list(result.run_requests or [])

    def run(self, request: dg.RunRequest) -> None:
        """Materialize what a run request of the sensor selects, as the daemon's run would."""
        start, end = request.tags.get(RANGE_START), request.tags.get(RANGE_END)
        days = DAILY.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)) if start else []
        self.materialize(
            dg.AssetSelection.assets(*request.asset_selection), days or [request.partition_key]
        )

    def tick(self, at: datetime | None = None) -> dict[str, set[str]]:
        """One evaluation (as of ``at``, default now); returns the requested partitions per
        asset (assets with any)."""
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor, evaluation_time=at
        )
        self.cursor = result.cursor
        requested = {
            asset_key.path[-1]: set(result.get_requested_partitions(asset_key))
            for asset_key in ALL_KEYS
            if result.get_num_requested(asset_key)
        }
        assert result.total_requested == sum(len(p) for p in requested.values())
        return requested

    def materialize(
        self,
        selection: dg.AssetSelection,
        days: Sequence[str] = (),
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        """Materialize ``selection`` for ``days`` (a single run, as a backfill would)."""
        tags = (
            {
                "dagster/asset_partition_range_start": days[0],
                "dagster/asset_partition_range_end": days[-1],
            }
            if len(days) > 1
            else {}
        )
        # a run that names its asset selection, as the daemon's and the sensors' runs do
        # (``dg.materialize`` leaves it empty, which hid dagster's ``executed_with_root_target``)
        job = self.defs.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(
            asset_selection=list(selection.resolve(self.defs.resolve_asset_graph())),
            partition_key=days[0] if len(days) == 1 else None,
            tags=tags,
            instance=self.instance,
            raise_on_error=raise_on_error,
        )

    def run_requested(self, requested: dict[str, set[str]]) -> None:
        """Materialize what a tick requested, as the runs the daemon launches would."""
        by_days: dict[tuple[str, ...], list[dg.AssetKey]] = {}
        for name, days in requested.items():
            by_days.setdefault(tuple(sorted(days)), []).append(key(name))
        for days, keys in by_days.items():
            window = dg.PartitionKeyRange(days[0], days[-1])
            assert list(days) == DAILY.get_partition_keys_in_range(window), days
            self.materialize(dg.AssetSelection.assets(*keys), days)


def clean_requested(*days: str) -> dict[str, set[str]]:
    return {name: set(days) for name in CLEAN}


def features_requested(*days: str) -> dict[str, set[str]]:
    """The feature layer of ``days``: training features and online snapshots."""
    return {"flight_features": set(days), "online_features": set(days)}


@pytest.fixture
def automation(resources: dict, fast_instance: dg.DagsterInstance) -> Automation:
    return Automation(resources, fast_instance)


def test_clean_and_features_follow_the_data_that_lands(
    landing_zone: LandingZone, automation: Automation
):
    """Requests go to exactly the partitions whose inputs exist, once each."""
    publish(landing_zone, day_keys(date(2013, 1, 1), date(2013, 1, 3)))

    # (a) nothing materialized: nothing to do
    assert automation.tick() == {}

    # (b) the sensor's runs ingest one day: its clean partitions, and only those, are requested.
    # Its features are not: they also read the previous days' clean flights, and 2013-01-01
    # has not been ingested.
    automation.materialize(REFERENCE)
    automation.materialize(RAW, ["2013-01-02"])
    requested = automation.tick()
    assert requested == clean_requested("2013-01-02")

    # (d) lazy: once the requested runs are done, and with no new data, nothing is requested
    automation.run_requested(requested)
    assert automation.tick() == {}
    assert automation.tick() == {}

    # (c) the history day is ingested and cleaned in one run: the features of both days are
    # requested, and the day just cleaned is not requested again
    automation.materialize(DAILY_INGEST_AND_CLEAN, ["2013-01-01"])
    requested = automation.tick()
    assert requested == features_requested("2013-01-01", "2013-01-02")
    automation.run_requested(requested)
    assert automation.tick() == {}

    # flights of the third day, but no weather yet: its features wait
    automation.materialize(
        dg.AssetSelection.assets(key("raw_flights")) | FLIGHTS_CLEAN, ["2013-01-03"]
    )
    assert automation.tick() == {}

    # the weather lands: its cleaning and the day's features go in one tick, because an
    # upstream requested in the same tick counts as present
    automation.materialize(dg.AssetSelection.assets(key("raw_weather")), ["2013-01-03"])
    requested = automation.tick()
    assert requested == {
        "weather_clean": {"2013-01-03"},
        "weather_rejected": {"2013-01-03"},
        **features_requested("2013-01-03"),
    }
    automation.run_requested(requested)
    assert automation.tick() == {}


def test_what_a_landing_run_wrote_is_not_requested_again(
    landing_zone: LandingZone, automation: Automation
):
    """The landing sensor writes the raw, clean and feature partitions of what landed in one
    run (a week as one range with its reference tables, then a day): automation requests none of
    it again. After a corrected re-export of one day, in one run too, the history-refresh sensor
    requests exactly the later days' features that read that day as history, as one range run,
    and automation none of them."""
    publish(landing_zone, day_keys(date(2013, 1, 1), date(2013, 1, 9)))
    automation.materialize(LANDING_RUN, day_keys(date(2013, 1, 1), date(2013, 1, 8)))
    assert automation.tick() == {}
    automation.materialize(LANDING_RUN - REFERENCE, ["2013-01-09"])
    assert automation.tick() == {}
    assert automation.refresh() == []

    publish(landing_zone, ["2013-01-05"], fault="duplicate-rows")
    automation.materialize(LANDING_RUN - REFERENCE, ["2013-01-05"])

    assert automation.tick() == {}
    (request,) = automation.refresh()
    assert set(request.asset_selection) == {key("flight_features"), key("online_features")}
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2013-01-06", "2013-01-09")
    assert request.run_config == IN_PROCESS
    assert automation.refresh() == []  # nothing written since: the same tick is not repeated
    automation.run(request)
    assert automation.tick() == {}
    assert automation.refresh() == []


def test_history_refresh_waits_for_the_rewritten_day_and_for_runs_targeting_the_readers(
    landing_zone: LandingZone, automation: Automation
):
    """A rewritten day whose blocking check failed refreshes nothing (as automation's blocking
    check condition does); the readers wait too while an unfinished run targets them; once both
    clear, the next tick requests them."""
    publish(landing_zone, day_keys(date(2013, 1, 1), date(2013, 1, 4)))
    automation.materialize(LANDING_RUN, day_keys(date(2013, 1, 1), date(2013, 1, 4)))
    assert automation.tick() == {}
    automation.materialize(FLIGHTS_CLEAN, ["2013-01-02"])
    fail_check(automation.instance, "flights_clean", CLEAN_SCHEMA, "2013-01-02")

    assert automation.refresh() == []
    assert automation.tick() == {}

    automation.materialize(FLIGHTS_CLEAN, ["2013-01-02"])  # passes its check this time
    run = automation.instance.create_run_for_job(
        dg.define_asset_job("readers").resolve(asset_graph=automation.defs.resolve_asset_graph()),
        asset_selection=frozenset({key("flight_features")}),
        tags={RANGE_START: "2013-01-03", RANGE_END: "2013-01-04"},
        status=DagsterRunStatus.STARTED,
    )
    # the online snapshots read the day too, and no run targets them
    (snapshots,) = automation.refresh()
    assert snapshots.asset_selection == [key("online_features")]
    automation.run(snapshots)

    automation.instance.report_run_canceled(run)
    (features,) = automation.refresh()
    assert features.asset_selection == [key("flight_features")]
    assert (features.tags[RANGE_START], features.tags[RANGE_END]) == ("2013-01-03", "2013-01-04")
    # the rewritten day's own features are automation's, in the same ticks
    assert automation.tick() == {"flight_features": {"2013-01-02"}}


def test_partitions_an_unfinished_run_targets_are_not_requested(
    landing_zone: LandingZone, automation: Automation
):
    """A range run that has written some of its partitions still targets them until it ends
    (and for a tick that began before it ended): a tick that reads them as missing is not told
    they are free (``in_progress()`` already is, per written partition)."""
    days = day_keys(date(2013, 1, 1), date(2013, 1, 2))
    publish(landing_zone, days)
    automation.materialize(REFERENCE)
    automation.materialize(RAW, days)
    run = automation.instance.create_run_for_job(
        dg.define_asset_job("cleaning").resolve(asset_graph=automation.defs.resolve_asset_graph()),
        asset_selection=frozenset({key("flights_clean"), key("flights_rejected")}),
        tags={RANGE_START: days[0], RANGE_END: days[-1]},
        status=DagsterRunStatus.STARTED,
    )

    # the weather of both days is free, and the first day's snapshot, which reads no flights
    assert automation.tick() == {
        **{name: set(days) for name in ("weather_clean", "weather_rejected")},
        "online_features": {days[0]},
    }

    # a tick that began before the run ended reads the event log as of its start: the run still
    # counts, though its status is read after it ended
    began = datetime.now(UTC)
    automation.instance.report_run_canceled(run)
    requested = automation.tick(at=began)
    assert not {"flights_clean", "flights_rejected"} & set(requested)

    requested = automation.tick()
    assert {name: requested.get(name) for name in ("flights_clean", "flights_rejected")} == {
        name: set(days) for name in ("flights_clean", "flights_rejected")
    }


def test_failed_landed_file_check_blocks_only_that_day(
    landing_zone: LandingZone, automation: Automation
):
    """(e) A day whose raw file fails its blocking check is not cleaned until it is fixed."""
    publish(landing_zone, day_keys(date(2013, 1, 1), date(2013, 1, 1)))
    publish(landing_zone, day_keys(date(2013, 1, 2), date(2013, 1, 2)), fault="missing-column")
    assert automation.tick() == {}

    automation.materialize(REFERENCE)
    ingest = automation.materialize(RAW, ["2013-01-01", "2013-01-02"], raise_on_error=False)
    assert not ingest.success  # one single-run backfill, one failed day
    landed_checks = {
        (evaluation.asset_key.path[-1], evaluation.partition, evaluation.passed)
        for evaluation in ingest.get_asset_check_evaluations()
        if evaluation.check_name == LANDED_FILE_SCHEMA
    }
    assert landed_checks == {
        ("raw_flights", "2013-01-01", True),
        ("raw_flights", "2013-01-02", False),
        ("raw_weather", "2013-01-01", True),
        ("raw_weather", "2013-01-02", False),
    }

    # 2013-01-01 has no history to wait for, so its features go with its clean partitions
    requested = automation.tick()
    assert requested == {**clean_requested("2013-01-01"), **features_requested("2013-01-01")}
    automation.run_requested(requested)
    assert automation.tick() == {}

    # the corrected export lands and is ingested: the day is unblocked
    publish(landing_zone, day_keys(date(2013, 1, 2), date(2013, 1, 2)))
    automation.materialize(RAW, ["2013-01-02"])
    assert automation.tick() == {
        **clean_requested("2013-01-02"),
        **features_requested("2013-01-02"),
    }


def fail_check(instance: dg.DagsterInstance, asset: str, check_name: str, day: str) -> None:
    """Record a failed blocking check on a partition's latest materialization."""
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key(asset), asset_partitions=[day]), limit=1
    ).records[0]
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=key(asset),
            check_name=check_name,
            passed=False,
            partition=day,
            blocking=True,
            description="recorded by the test",
            target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                storage_id=latest.storage_id, run_id=latest.run_id, timestamp=latest.timestamp
            ),
        )
    )


def test_failed_clean_check_blocks_every_feature_day_that_reads_it(
    landing_zone: LandingZone, automation: Automation
):
    """Features read a day and its trailing history: a failed day blocks both readers."""
    publish(landing_zone, day_keys(date(2013, 1, 1), date(2013, 1, 3)))
    assert automation.tick() == {}
    automation.materialize(REFERENCE)
    automation.materialize(DAILY_INGEST_AND_CLEAN, ["2013-01-01", "2013-01-02", "2013-01-03"])
    fail_check(automation.instance, "flights_clean", CLEAN_SCHEMA, "2013-01-02")

    # 2013-01-02 reads the failed day as its own, 2013-01-03 as history; the online snapshot
    # of a day reads only the days before it
    requested = automation.tick()
    assert requested == {
        "flight_features": {"2013-01-01"},
        "online_features": {"2013-01-01", "2013-01-02"},
    }
    automation.run_requested(requested)
    assert automation.tick() == {}

    # re-running the day with passing checks unblocks the day and the one that reads it
    automation.materialize(FLIGHTS_CLEAN, ["2013-01-02"])
    assert automation.tick() == {
        "flight_features": {"2013-01-02", "2013-01-03"},
        "online_features": {"2013-01-03"},
    }


def test_data_ingested_before_automation_starts_is_still_cleaned(
    landing_zone: LandingZone, automation: Automation
):
    """Days ingested before the first tick (a backfill, a new deployment) are not stranded."""
    publish(landing_zone, day_keys(date(2013, 1, 1), date(2013, 1, 2)))
    automation.materialize(REFERENCE)
    automation.materialize(RAW, ["2013-01-01", "2013-01-02"])

    requested = automation.tick()

    assert requested == {
        **clean_requested("2013-01-01", "2013-01-02"),
        **features_requested("2013-01-01", "2013-01-02"),
    }


def test_failed_run_is_not_retried_every_tick(
    landing_zone: LandingZone, automation: Automation, home: Path
):
    """A partition whose run failed waits for new upstream data instead of retrying each tick."""
    publish(landing_zone, day_keys(date(2013, 1, 1), date(2013, 1, 1)))
    assert automation.tick() == {}
    automation.materialize(REFERENCE)
    automation.materialize(RAW, ["2013-01-01"])
    requested = automation.tick()
    assert requested == {**clean_requested("2013-01-01"), **features_requested("2013-01-01")}

    # the stored raw flights of the day are damaged: the clean flights run fails
    (home / "warehouse" / "flights" / "raw_flights" / "2013-01-01.parquet").write_bytes(b"junk")
    failed = automation.materialize(FLIGHTS_CLEAN, ["2013-01-01"], raise_on_error=False)
    assert not failed.success
    automation.materialize(
        dg.AssetSelection.assets(key("weather_clean"), key("weather_rejected")), ["2013-01-01"]
    )
    # (the day's online snapshot reads only earlier days, so it does not wait for them)
    assert automation.tick() == {"online_features": {"2013-01-01"}}
    automation.materialize(dg.AssetSelection.assets(key("online_features")), ["2013-01-01"])
    assert automation.tick() == {}
    assert automation.tick() == {}

    # the day is ingested again: the failed partitions are requested again
    automation.materialize(RAW, ["2013-01-01"])
    assert automation.tick() == {
        **clean_requested("2013-01-01"),
        **features_requested("2013-01-01"),
    }
