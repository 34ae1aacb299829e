"""The REST part of the ingestion benchmark (``benchmarks/ingestion.py`` calls ``rest_rate``):
the requests a second a load through the platform achieves against the rate it declares.

The flights publisher's weather API (``ml-assets publish flights --to rest``, which allows 25
requests a second) serves the real hourly weather; the flights declaration with its weather
switched to the ``rest`` kind, declaring 20 requests a second and small pages, loads the days'
``raw_weather`` partitions in one single-run backfill, as the platform's assets and resources
do. The rate is measured where it matters, at the API: its request log's arrival times. Target:
within 10% below the declared rate, and never above it (no second holds more requests).
``benchmarks/ingestion.py`` reports it (the suite runs its ``--quick``); run alone as
``.venv/bin/python benchmarks/_rest_ingestion.py [--quick]`` it prints the figures.
"""

import itertools
import os
import time
from datetime import date, timedelta
from typing import Any

from _common import benchmark_home, enter_home

DECLARED_PER_SECOND = 20.0
TOKEN = "benchmark-token"


def _busiest_second(arrivals: list[float]) -> int:
    """The most requests that arrived within one second of each other."""
    return max(sum(1 for later in arrivals if first <= later < first + 1) for first in arrivals)


def rest_rate(quick: bool) -> dict[str, Any]:
    """Load days of ``raw_weather`` from the weather API through the platform (3 days of 9
    pages, quick: ~2 s of requests; else 31 days of 18 pages, ~28 s) and return the rate the
    API saw against the declared one."""
    import dagster as dg
    import yaml

    days, per_page = (3, 8) if quick else (31, 4)
    with benchmark_home("rest_ingestion_", keep=False) as home:
        enter_home(home)
        from ml_assets import pipelines
        from ml_assets.contract.dagster_terms import asset_key
        from ml_assets.contract.declaration import PipelineDeclaration
        from ml_assets.data.sources import landed_assets
        from ml_assets.pipelines.flights.assets import SOURCE_SCHEMAS
        from ml_assets.pipelines.flights.publish import WEATHER_API, day_keys
        from resources.builder import platform_resources
        from resources.rest_connection import token_variable, url_variable

        keys = day_keys(date(2013, 1, 1), date(2013, 1, 1) + timedelta(days=days - 1))
        flights = pipelines.load("flights")
        declared = yaml.safe_load(pipelines.declaration_path("flights").read_text())
        for source in declared["sources"]:
            if source["name"] == "weather":
                source.update(
                    kind="rest",
                    connection=WEATHER_API,
                    path="/v1/weather/hourly",
                    records="data",
                    paginator={"type": "page_number", "total_path": "meta.total_pages"},
                    params={"per_page": per_page},
                    window_params={"start": "start", "end": "end"},
                    rate_limit_per_second=DECLARED_PER_SECOND,
                )
        declaration = PipelineDeclaration.model_validate(declared)
        raw = asset_key(declaration, "raw_weather")
        assets = [a for a in landed_assets(declaration, SOURCE_SCHEMAS) if raw in a.keys]
        assert flights.publish_to_api is not None
        with flights.publish_to_api(lambda name: ("http://127.0.0.1:0", TOKEN), keys) as api:
            os.environ[url_variable(WEATHER_API)] = api.url
            os.environ[token_variable(WEATHER_API)] = TOKEN
            started = time.perf_counter()
            result = dg.materialize(
                assets,
                resources=platform_resources([declaration]),
                instance=dg.DagsterInstance.ephemeral(),
                tags={
                    "dagster/asset_partition_range_start": keys[0],
                    "dagster/asset_partition_range_end": keys[-1],
                },
            )
            seconds = time.perf_counter() - started
            log = list(api.log)
    # each partition's materialization carries the run's totals
    event = result.get_asset_materialization_events()[-1].materialization
    figures = {name: value.value for name, value in event.metadata.items()}
    arrivals = [served.at for served in log]
    achieved = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    return {
        "partitions": len(keys),
        "requests": len(log),
        "throttled": sum(served.status == 429 for served in log),
        "rows": figures["source/rows_in_raw"],
        "declared_per_second": DECLARED_PER_SECOND,
        "achieved_per_second": round(achieved, 2),
        "achieved_share": round(achieved / DECLARED_PER_SECOND, 3),
        "busiest_second": _busiest_second(arrivals),
        "shortest_gap_s": round(min(b - a for a, b in itertools.pairwise(arrivals)), 4),
        "run_seconds": round(seconds, 2),
        "target_met": 0.9 <= achieved / DECLARED_PER_SECOND <= 1
        and _busiest_second(arrivals) <= DECLARED_PER_SECOND,
    }


if __name__ == "__main__":
    import sys

    print(rest_rate(quick="--quick" in sys.argv))
