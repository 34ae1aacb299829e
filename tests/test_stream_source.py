"""The ``stream`` source kind on the machine's real RabbitMQ: the taxi trips published as events
on a stream queue (``ml-assets publish taxi --to stream``) give the same clean and feature
partitions as the monthly files, row for row; the raw metadata says what was read (never the
secret); a replayed or re-published event never doubles a row; the stream sensor requests
exactly the partitions new events belong to. A broker that cannot be reached fails these tests.
"""

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from conftest import platform_test_instance
from stream_fixtures import (
    BROKER,
    URL_VARIABLE,
    World,
    broker,
    stream_queue,
)

from ml_assets import cli, pipelines
from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.pipeline import Pipeline
from ml_assets.data.sources.stream import NEXT_OFFSET, STREAM_FROM_TAG
from ml_assets.home import HOME_ENV_VAR, LANDING_ENV_VAR, ONLINE_STORE_ENV_VAR, WAREHOUSE_ENV_VAR
from ml_assets.pipelines.taxi.publish import (
    EVENT_TIME,
    STREAM_CONNECTION,
    publish,
    publish_to_stream,
    stream_declaration,
)
from ml_assets.pipelines.taxi.schemas import TRIP_FEATURES
from ml_assets.platform import code_location
from resources.landing_zone import default_landing_zone
from sensors.stream_source import RANGE_END, RANGE_START, build_stream_source_sensor

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MONTHS = ["2022-01-01", "2022-02-01", "2022-03-01", "2022-04-01"]


@pytest.fixture(scope="module")
def queue() -> Iterator[str]:
    """The four months of trips published to a fresh stream queue, as ``ml-assets publish taxi
    --to stream`` publishes them."""
    with stream_queue() as name, pytest.MonkeyPatch.context() as patch:
        patch.setenv(URL_VARIABLE, BROKER)
        assert cli.main(["publish", "taxi", "--to", "stream", "--queue", name]) == 0
        yield name


@pytest.fixture(scope="module")
def worlds(queue: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, World]]:
    """The four months loaded twice: from the landed files, and from the stream."""
    with contextlib.ExitStack() as stack:
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        for variable in (LANDING_ENV_VAR, WAREHOUSE_ENV_VAR, ONLINE_STORE_ENV_VAR):
            patch.delenv(variable, raising=False)
        patch.setenv(URL_VARIABLE, BROKER)
        worlds = {}
        for kind, declaration in (
            ("files", pipelines.declaration("taxi")),
            ("stream", stream_declaration(queue)),
        ):
            home = tmp_path_factory.mktemp(kind)
            patch.setenv(HOME_ENV_VAR, str(home))
            if kind == "files":
                publish(default_landing_zone(), MONTHS)
            instance = stack.enter_context(platform_test_instance())
            world = worlds[kind] = World(home, instance, declaration)
            assert world.materialize(MONTHS, dg.AssetSelection.all()).success
        yield worlds


def test_the_stream_gives_the_same_clean_and_feature_rows_as_the_files(
    worlds: dict[str, World],
) -> None:
    files, stream = worlds["files"], worlds["stream"]
    for month in MONTHS:
        for asset in ("trips_clean", "trip_features"):
            expected = files.stored(asset, month).sort_values("trip_id", ignore_index=True)
            assert len(expected) > 1500
            stored = stream.stored(asset, month).sort_values("trip_id", ignore_index=True)
            pd.testing.assert_frame_equal(stored, expected, obj=f"{asset} {month}")
        assert len(stream.stored("trips_rejected", month)) == len(
            files.stored("trips_rejected", month)
        )


def test_every_raw_materialization_says_what_was_read_and_never_the_secret(
    worlds: dict[str, World], queue: str
) -> None:
    stream = worlds["stream"]
    rows = 0
    for month in MONTHS:
        metadata = stream.materialization(month)
        raw = stream.stored("raw_trips", month)
        rows += len(raw)
        assert metadata["source/kind"] == "stream"
        assert metadata["source/connection"] == STREAM_CONNECTION
        assert metadata["source/queue"] == queue
        assert metadata["source/offset_range"] == "[0, 9999]"
        assert metadata["source/events_read"] == 10_000
        assert metadata[NEXT_OFFSET] == 10_000
        assert metadata["source/late_events"] == 0
        assert metadata["source/unplaced_events"] == 0
        assert metadata["source/schema"][EVENT_TIME] == "str"
        assert metadata["source/seconds"] > 0
        # the run's months closed as it read the next month's events; April is still open
        assert (metadata["stream/closed_at"][month] is None) == (month == MONTHS[-1])
        observed = stream.instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=stream.raw, asset_partitions=[month]), limit=1
        ).records[0]
        figures = observed.asset_observation.metadata
        assert figures["source/rows_in_raw"].value == figures["source/events_new"].value == len(raw)
        assert "guest:guest" not in str(metadata) and "amqp://" not in str(metadata)
    assert rows == 10_000


def test_the_sensor_requests_exactly_the_partitions_new_events_belong_to(
    worlds: dict[str, World], queue: str
) -> None:
    """On an instance that wrote nothing, one run of the four months from the stream's first
    event; where they were written, nothing; an event for March alone (closed: a late event,
    re-opened by default) requests March."""
    stream = worlds["stream"]
    declaration = stream.declaration
    sensor = build_stream_source_sensor(declaration, declaration.source("trips"))
    resources = {
        "stream_city": broker(),
        "warehouse": stream.resources["warehouse"],
    }
    definitions = dg.Definitions(assets=stream.assets, sensors=[sensor], resources=resources)

    def tick(instance: dg.DagsterInstance, cursor: str | None) -> Any:
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources=resources, definitions=definitions
        ) as context:
            return sensor.evaluate_tick(context)

    with platform_test_instance() as empty:
        first = tick(empty, None)
    (request,) = first.run_requests
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (MONTHS[0], MONTHS[-1])
    assert request.tags[STREAM_FROM_TAG] == "0"
    # the run brings what the four months alone determine: their clean and feature partitions
    names = {key.path[-1] for key in request.asset_selection}
    assert names == {"raw_trips", "trips_clean", "trips_rejected", "trip_features"}
    # the same events, where their partitions were written: nothing is pending any more
    assert tick(stream.instance, first.cursor).run_requests == []
    trip = {"trip_id": 99_001, "tip": "yes", "distance": 1.5, "company": "other", "local": "no",
            "dow": "Tue", "month": "Mar", "hour": 9, EVENT_TIME: "2022-03-15T09:30:00"}  # fmt: skip
    broker().publish(queue, [json.dumps(trip).encode()])
    (march,) = tick(stream.instance, first.cursor).run_requests
    assert march.partition_key == MONTHS[2] and RANGE_START not in march.tags
    assert {key.path[-1] for key in march.asset_selection} == names
    assert STREAM_FROM_TAG not in march.tags


def test_a_replayed_or_republished_event_never_doubles_a_row(
    worlds: dict[str, World], queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading April again reads nothing new; April published again (its trips appended to the
    stream a second time) leaves it with its rows once, and the offsets move past them."""
    stream = worlds["stream"]
    monkeypatch.setenv(HOME_ENV_VAR, str(stream.home))
    april = MONTHS[-1]
    before = stream.stored("raw_trips", april)
    start = broker().watermark(queue) + 1
    again = publish_to_stream(lambda _: BROKER, [april], queue=queue)
    for _ in range(2):
        assert stream.materialize([april]).success
        after = stream.stored("raw_trips", april)
        pd.testing.assert_frame_equal(after, before)
    metadata = stream.materialization(april)
    assert metadata[NEXT_OFFSET] == start + again
    assert metadata["source/offset_range"] == f"[{start + again}, {start + again - 1}]"


def test_a_broker_url_from_a_secret_file_and_the_platform_wiring(
    queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code location loads with a stream source (one connection resource per broker, the
    stream sensor on the raw trips, no landing sensor target for them), and the broker's URL may
    come from a secret file."""
    secret = tmp_path / "city-url"
    secret.write_text(BROKER + "\n")
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path))
    monkeypatch.delenv(URL_VARIABLE, raising=False)
    monkeypatch.setenv(f"{URL_VARIABLE}_FILE", str(secret))
    declaration = stream_declaration(queue)
    world = World(tmp_path, dg.DagsterInstance.ephemeral(), declaration)
    pipeline = Pipeline(
        declaration=declaration,
        source_file=pipelines.declaration_path("taxi"),
        data_assets=world.assets,
        feature_schema=TRIP_FEATURES,
        publish=publish,
    )
    definitions = code_location([pipeline])
    dg.Definitions.validate_loadable(definitions)
    graph = definitions.resolve_asset_graph()
    landing = definitions.resolve_sensor_def("taxi_landing_zone_sensor")
    assert world.raw not in landing.asset_selection.resolve(graph)
    stream = definitions.resolve_sensor_def("taxi_trips_stream_sensor")
    features = asset_key(declaration, "trip_features")
    assert {world.raw, features} <= stream.asset_selection.resolve(graph)
    with dg.build_resources({"city": definitions.resources["stream_city"]}) as built:
        assert built.city.url_file == str(secret)
        assert built.city.watermark(queue) >= 9_999
