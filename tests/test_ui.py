"""The user's flows in the Dagster UI of ``ml-assets dev``, in a real browser (``ui_flows``).

Each test drives one flow on the session's platform once it serves its first models, asserts
what the page shows (text, statuses, metadata values) and then the platform's state behind it:
the runs (through the webserver's GraphQL API) and the files in the warehouse.
``--screenshots DIR`` saves each flow's final page (``make screenshots``: the docs').

The run page is not where a flow sees a run succeed: in ``ml-assets dev`` its live event log
stops following the run. Dagster's SQLite watcher (``SqliteEventLogStorageWatchdog``) reacts
only to writes to ``<run_id>.db``; the platform's event log (``KeptOpenSqliteEventLogStorage``)
keeps its connections open, so in WAL mode a run's events go to ``<run_id>.db-wal`` and reach
``<run_id>.db`` only at a checkpoint, which happens once the last connection to that database
closes (or the log passes 1,000 pages) — and the webserver, having read the run, keeps one open.
A flow sees the run where the UI polls instead: the runs list, the asset's page, the backfill.
"""

import re

import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START
from live import FirstModels, LivePlatform, tag, wait_for
from playwright.sync_api import Page, expect
from ui_flows import (
    Screenshots,
    automation_ticks_after,
    backfill_a_range,
    follow_a_run_on_its_page,
    land_damaged_day,
    lineage_shows_every_group,
    materialize_one_partition,
    model_evaluation_plots,
    next_day,
    open_failed_check,
    partition_detail,
)

from ml_assets import pipelines
from ml_assets.cli import first_model_partitions
from ml_assets.contract.dagster_terms import partitions_definition
from ml_assets.data.sources.ingest import LANDED_FILE_SCHEMA

pytestmark = [pytest.mark.ui, pytest.mark.slow]

LAYERS = ("ingest", "clean", "features", "models", "deploy")
FLIGHT_DAYS = partitions_definition(
    pipelines.declaration("flights").partitions
).get_partition_keys()
LAST_SEEDED_DAY = FLIGHT_DAYS[first_model_partitions("flights") - 1]
"""The last day ``ml-assets dev`` lands for flights (its 74th)."""
BACKFILL_FIRST, BACKFILL_LAST = "2013-03-01", "2013-03-05"


@pytest.fixture
def platform(first_models: FirstModels) -> LivePlatform:
    """The session's platform with its first models, once no run is in flight (the tests
    before this one may have left automation work behind)."""
    wait_for(first_models.platform.settled, 600, "the platform's runs to finish")
    return first_models.platform


def _run(platform: LivePlatform, short_id: str) -> dict:
    (run,) = [r for r in platform.runs() if r["runId"].startswith(short_id)]
    return run


def _mtimes(platform: LivePlatform, pipeline: str, asset: str, days: list[str]) -> dict:
    files = {p.stem: p for p in platform.files(pipeline, asset)}
    return {day: files[day].stat().st_mtime_ns for day in days}


def test_the_lineage_graph_shows_every_group_of_both_pipelines(
    page: Page, platform: LivePlatform, screenshots: Screenshots
) -> None:
    shown = lineage_shows_every_group(page, platform, screenshots)

    defined = {
        n["groupName"] for n in platform.graphql("{ assetNodes { groupName } }")["assetNodes"]
    }
    named = sorted(_group_named(label, defined) for label in shown)
    assert named == sorted(defined)
    assert set(named) >= {f"{name}_{layer}" for name in pipelines.names() for layer in LAYERS}


def _group_named(label: str, groups: set[str]) -> str:
    """The group a graph node's label names: the UI shortens a long name in its middle
    (``ridersh…_features``)."""
    if "…" not in label:
        return label
    head, tail = label.split("…", 1)
    (group,) = [g for g in groups if g.startswith(head) and g.endswith(tail)]
    return group


def test_one_partition_materialized_from_the_asset_page_succeeds(
    page: Page, platform: LivePlatform, screenshots: Screenshots
) -> None:
    day = LAST_SEEDED_DAY
    before = _mtimes(platform, "flights", "flight_features", [day])

    launched = materialize_one_partition(
        page, platform, screenshots, "flights", "flight_features", day
    )

    expect(launched.partition.get_by_text("Materialized", exact=True)).to_be_visible()
    run = _run(platform, launched.short_id)
    assert run["status"] == "SUCCESS"
    assert run["assetSelection"] == [{"path": ["flights", "flight_features"]}]
    assert tag(run, "dagster/partition") == day
    assert tag(run, "dagster/from_ui") == "true"
    assert _mtimes(platform, "flights", "flight_features", [day])[day] > before[day]


def test_the_run_page_follows_a_run_to_its_end(page: Page, platform: LivePlatform) -> None:
    """The run page follows a run live to its end, without a reload (a bug once: the event
    watcher waited for writes to ``<run_id>.db``, which kept-open connections leave in the
    write-ahead log)."""
    short_id = follow_a_run_on_its_page(
        page,
        platform,
        "flights",
        "flight_features",
        FLIGHT_DAYS[FLIGHT_DAYS.index(LAST_SEEDED_DAY) - 1],
    )

    assert _run(platform, short_id)["status"] == "SUCCESS"
    expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible(timeout=30_000)


def test_a_range_backfilled_from_the_partitions_view_runs_as_one_run(
    page: Page, platform: LivePlatform, screenshots: Screenshots
) -> None:
    days = [d for d in FLIGHT_DAYS if BACKFILL_FIRST <= d <= BACKFILL_LAST]
    before = _mtimes(platform, "flights", "flight_features", days)

    backfill = backfill_a_range(
        page, platform, screenshots, "flights", "flight_features", BACKFILL_FIRST, BACKFILL_LAST
    )

    expect(backfill.page.get_by_text(f"{BACKFILL_FIRST}...{BACKFILL_LAST}")).to_be_visible()
    expect(backfill.runs).to_have_count(1)
    expect(backfill.runs.get_by_text("Success", exact=True)).to_be_visible()
    runs = [r for r in platform.runs() if tag(r, "dagster/backfill") == backfill.backfill_id]
    assert len(runs) == 1, runs  # the single-run backfill policy: one run for the range
    (run,) = runs
    assert run["status"] == "SUCCESS"
    assert (tag(run, RANGE_START), tag(run, RANGE_END)) == (BACKFILL_FIRST, BACKFILL_LAST)
    expect(backfill.runs.get_by_text(run["runId"][:8], exact=True)).to_be_visible()
    after = _mtimes(platform, "flights", "flight_features", days)
    assert all(after[day] > before[day] for day in days), (before, after)


RUNS_OF_PARTITION = """
query($partition: String!) {
  runsOrError(filter: {tags: [{key: "dagster/partition", value: $partition}]}) {
    ... on Runs { results { runId status endTime assetSelection { path } } }
  }
}"""


def test_a_failing_blocking_check_shows_its_failure_and_nothing_downstream_runs(
    page: Page, platform: LivePlatform, screenshots: Screenshots
) -> None:
    """The day after the seeded ones lands damaged (``missing-column``: each file lacks a
    declared column); the sensor ingests it, the raw layer's blocking ``landed_file_schema``
    check fails, and neither the sensor's run nor automation materializes anything downstream
    of that day."""
    day = next_day(LAST_SEEDED_DAY)
    land_damaged_day(platform, day)

    def ingested() -> list[dict]:
        """The finished runs of the day, once they cover both of its files."""
        runs = platform.graphql(RUNS_OF_PARTITION, {"partition": day})["runsOrError"]["results"]
        read = {key["path"][-1] for run in runs for key in run["assetSelection"]}
        done = all(run["endTime"] is not None for run in runs)
        return runs if done and read >= {"raw_flights", "raw_weather"} else []

    wait_for(ingested, 240, f"the sensor's runs of {day} (its flights and weather)")
    runs = ingested()
    assert all(r["status"] == "FAILURE" for r in runs), runs  # a blocking check failed
    ended = max(r["endTime"] for r in runs)
    wait_for(lambda: automation_ticks_after(platform, ended) >= 2, 120, "two automation ticks")
    wait_for(platform.settled, 300, "the runs automation requested")

    failed = open_failed_check(
        page, platform, screenshots, "flights", "raw_flights", LANDED_FILE_SCHEMA, day
    )

    landed = (platform.home / "landing" / "flights" / f"{day}.csv").read_text()
    rows = failed.metadata.get_by_role("row")
    expect(rows.filter(has_text="failure_count")).to_have_text(re.compile(r"failure_count\s*1"))
    expect(rows.filter(has_text="rows_checked")).to_have_text(
        re.compile(rf"rows_checked\s*{len(landed.splitlines()) - 1}")
    )
    rules = failed.failing_rules.get_by_role("row")
    expect(rules).to_have_count(2)  # the header and the one failing rule
    expect(rules.nth(1)).to_have_text(re.compile(r"arr_delay\s*column_in_dataframe\s*1"))
    for asset in ("flights_clean", "flight_features"):
        detail = partition_detail(page, platform, "flights", asset, day)
        expect(detail).to_contain_text(re.compile(r"Latest materialization\s*None"))
        expect(detail.get_by_text("Materialized", exact=True)).to_have_count(0)
        assert day not in platform.partitions("flights", asset), asset
    assert day in platform.partitions("flights", "raw_flights")  # the day was ingested


@pytest.mark.parametrize("pipeline", pipelines.names())
def test_the_model_evaluation_shows_its_plots(
    page: Page, platform: LivePlatform, screenshots: Screenshots, pipeline: str
) -> None:
    drawn = model_evaluation_plots(page, platform, screenshots, pipeline)

    (latest,) = platform.graphql(
        "query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { "
        "... on AssetNode { assetMaterializations(limit: 1) { metadataEntries { label } } } } }",
        {"path": [pipeline, "model_evaluation"]},
    )["assetNodeOrError"]["assetMaterializations"]
    assert sorted(drawn) == sorted(
        e["label"].removeprefix("plot/")
        for e in latest["metadataEntries"]
        if e["label"].startswith("plot/")
    )
    assert "feature_importances" in drawn
    assert all(width >= 200 and height >= 200 for width, height in drawn.values()), drawn
    metrics = page.get_by_role("row").filter(has_text=re.compile(r"^\s*metrics"))
    expect(metrics).to_contain_text("baseline")
