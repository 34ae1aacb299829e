"""The stream source's end-to-end rate, for ``benchmarks/ingestion.py``: the taxi trips published
as events on a RabbitMQ stream queue of its own, then read into their raw monthly partitions by
the platform's raw asset (the taxi declaration switched to the stream kind), every event in
raw once. A library, not a benchmark (hence the leading underscore): the ingestion benchmark
calls ``stream_rate`` in its own quick mode or full (the suite runs its ``--quick``); run alone
as ``.venv/bin/python benchmarks/_stream_ingestion.py [--quick]`` it prints the figures.

The broker is ``$ML_ASSETS_STREAM_CITY_URL`` (default: the local RabbitMQ as guest).
"""

import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

from _common import benchmark_home, enter_home

LOCAL_BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"
COPIES = {True: 1, False: 5}
"""How many times the four months are published (quick: 10,000 events; full: 50,000), each copy
with trip ids of its own (distinct events, none deduplicated away)."""
MONTHS = {True: ["2022-01-01", "2022-02-01"], False: None}
"""Quick: January and February (3,680 events); full: every month."""


def _events(months: list[str], copies: int) -> Iterator[bytes]:
    from ml_assets.pipelines.taxi.publish import trip_events

    for copy in range(copies):
        for event in trip_events(months):
            trip = json.loads(event)
            yield json.dumps({**trip, "trip_id": trip["trip_id"] + copy * 1_000_000}).encode()


def stream_rate(quick: bool) -> dict[str, Any]:
    """Events per second from publishing to raw partitions: the events, the seconds and rate of
    publishing them (broker-confirmed; the JSON bodies made before the clock starts), of the
    platform's run into raw (one range run, in process), and of both end to end, and the rows in
    raw (equal to the events, or this raises)."""
    import dagster as dg

    from ml_assets.contract.dagster_terms import asset_key, partitions_definition
    from ml_assets.data.sources import landed_assets
    from ml_assets.pipelines.taxi.publish import STREAM_CONNECTION, stream_declaration
    from ml_assets.pipelines.taxi.schemas import RAW_TRIPS
    from resources.builder import platform_resources
    from resources.stream_connection import StreamConnection

    variable = StreamConnection.url_variable(STREAM_CONNECTION)
    url = os.environ.get(variable, LOCAL_BROKER)
    queue = f"benchmark-trips-{uuid.uuid4().hex[:8]}"
    declaration = stream_declaration(queue)
    months = MONTHS[quick] or partitions_definition(declaration.partitions).get_partition_keys()
    broker = StreamConnection(name=STREAM_CONNECTION, url=url)
    raw = asset_key(declaration, "raw_trips")
    assets = landed_assets(declaration, {"trips": RAW_TRIPS})
    tags = {
        "dagster/asset_partition_range_start": months[0],
        "dagster/asset_partition_range_end": months[-1],
    }
    with (
        benchmark_home("stream-ingestion-", keep=False) as home,
        tempfile.TemporaryDirectory() as dagster_home,
        dg.instance_for_test(temp_dir=dagster_home) as instance,
    ):
        enter_home(home)
        os.environ[variable] = url
        resources = platform_resources([declaration])
        bodies = list(_events(months, COPIES[quick]))  # made before the clock starts
        began = time.perf_counter()
        events = broker.publish(queue, bodies)
        published = time.perf_counter()
        try:
            result = dg.materialize(
                assets,
                tags=tags,
                resources=resources,
                instance=instance,
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            )
            ended = time.perf_counter()
        finally:
            with broker.open("cleanup") as (_, channel):
                channel.queue_delete(queue)
    # a range run's every partition carries the run's totals
    written = next(
        event.materialization.metadata
        for event in result.get_asset_materialization_events()
        if event.materialization.asset_key == raw
    )
    rows = written["source/rows_in_raw"].value
    if rows != events:
        raise RuntimeError(f"{events} events published, {rows} rows in raw")
    return {
        "events": events,
        "publish_s": round(published - began, 2),
        "publish_events_per_s": round(events / (published - began)),
        "raw_s": round(ended - published, 2),
        "raw_events_per_s": round(events / (ended - published)),
        "events_per_s": round(events / (ended - began)),
        "rows_in_raw": rows,
    }


if __name__ == "__main__":
    import sys

    print(stream_rate(quick="--quick" in sys.argv))
