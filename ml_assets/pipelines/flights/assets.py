"""The flights pipeline's data assets: landed files → raw → clean (generic factories), then
its own features and the online feature snapshot the prediction service reads.
"""

from collections.abc import Iterator, Mapping
from datetime import date, timedelta

import dagster as dg
import pandas as pd

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.data.checks import SchemaCheck, report_per_partition
from ml_assets.data.clean_and_rejected import clean_assets
from ml_assets.data.data_layers import (
    FEATURES,
    group,
    layer_automation,
    partition_check,
    partitioned,
)
from ml_assets.data.features_asset import FEATURE_SCHEMA
from ml_assets.data.metadata import table_definition_metadata
from ml_assets.data.sources import landed_assets
from ml_assets.pipelines.flights import config, schemas
from ml_assets.pipelines.flights.cleaning import clean_flights, clean_weather
from ml_assets.pipelines.flights.features import FeatureLookups, lookup_tables
from resources.partition_frames import PartitionStream
from resources.table_snapshot_store import TableSnapshotStore

DECLARATION = config.DECLARATION


def key(name: str) -> dg.AssetKey:
    """The key of flights' asset ``name``."""
    return asset_key(DECLARATION, name)


SOURCE_SCHEMAS = {
    "flights": schemas.RAW_FLIGHTS,
    "weather": schemas.RAW_WEATHER,
    "planes": schemas.PLANES,
    "airports": schemas.AIRPORTS,
    "airlines": schemas.AIRLINES,
}
"""The schema of what each source holds, whatever its kind."""
landed = landed_assets(DECLARATION, SOURCE_SCHEMAS)
clean_flights_assets = clean_assets(
    DECLARATION,
    config.FLIGHTS_SOURCE,
    clean_flights,
    schemas.FLIGHTS_CLEAN,
    schemas.FLIGHTS_REJECTED,
    "Typed, deduplicated flights of the day; cancelled and diverted flights kept and flagged.",
)
clean_weather_assets = clean_assets(
    DECLARATION,
    config.WEATHER_SOURCE,
    clean_weather,
    schemas.WEATHER_CLEAN,
    schemas.WEATHER_REJECTED,
    "Hourly weather per origin airport for every local hour of the day, outliers blanked and "
    "gaps filled by the declared rule.",
)

HISTORY = dg.TimeWindowPartitionMapping(
    start_offset=-config.TRAILING_DAYS, end_offset=0, allow_nonexistent_upstream_partitions=True
)
"""A feature partition reads its own day and the ``TRAILING_DAYS`` days before it."""
PREVIOUS_DAYS = dg.TimeWindowPartitionMapping(
    start_offset=-config.TRAILING_DAYS, end_offset=-1, allow_nonexistent_upstream_partitions=True
)
"""An online snapshot reads only the ``TRAILING_DAYS`` days before its own."""


def previous_days(partition_key: str, days: int) -> list[str]:
    day = date.fromisoformat(partition_key)
    return [(day - timedelta(days=n)).isoformat() for n in range(days, 0, -1)]


@dg.asset(
    key_prefix=DECLARATION.prefix,
    group_name=group(DECLARATION, FEATURES),
    code_version="2",
    kinds={"pandas", "parquet"},
    owners=DECLARATION.owners,
    description=(
        "One row per scheduled flight with what is known at scheduling time: calendar, route, "
        "plane, origin weather at the departure hour and recent delays on the route and carrier "
        f"(previous {config.TRAILING_DAYS} days only); the arrival delay is the target column."
    ),
    metadata=table_definition_metadata(schemas.FLIGHT_FEATURES),
    ins={
        "flights_clean": dg.AssetIn(key("flights_clean"), partition_mapping=HISTORY),
        "weather_clean": dg.AssetIn(key("weather_clean")),
        "planes": dg.AssetIn(key("planes")),
    },
    check_specs=[
        partition_check(
            DECLARATION, "flight_features", FEATURE_SCHEMA, "Conforms to flight_features."
        )
    ],
    automation_condition=layer_automation(),
    **partitioned(DECLARATION),
)
def flight_features(
    context: dg.AssetExecutionContext,
    flights_clean: Mapping[str, pd.DataFrame],
    weather_clean: Mapping[str, pd.DataFrame],
    planes: pd.DataFrame,
) -> Iterator:
    schema_check = SchemaCheck(schemas.FLIGHT_FEATURES)

    def day_features(day: str) -> pd.DataFrame:
        lookups = FeatureLookups(
            **lookup_tables(_history(flights_clean, day), weather_clean[day], planes)
        )
        frame = lookups.frame(flights_clean[day])
        schema_check.add(day, frame)
        return frame

    # each day is computed, checked and written before the next: memory holds a window
    yield dg.Output(PartitionStream(context.partition_keys, day_features))
    yield from report_per_partition(
        context, context.asset_key, FEATURE_SCHEMA, schema_check.outcomes()
    )


def _history(flights_clean: Mapping[str, pd.DataFrame], day: str) -> pd.DataFrame:
    """The clean flights of the ``TRAILING_DAYS`` before ``day`` that were loaded."""
    frames = [
        flights_clean[d] for d in previous_days(day, config.TRAILING_DAYS) if d in flights_clean
    ]
    if frames:
        return pd.concat(frames, ignore_index=True)
    return next(iter(flights_clean.values())).iloc[:0] if flights_clean else pd.DataFrame()


@dg.asset(
    key_prefix=DECLARATION.prefix,
    group_name=group(DECLARATION, FEATURES),
    code_version="1",
    kinds={"pandas", "parquet"},
    owners=DECLARATION.owners,
    description=(
        "What the serving app looks a flight up in to compute its features online: the day's "
        "origin weather, the plane table and the recent route and carrier delay statistics "
        f"(previous {config.TRAILING_DAYS} days), as one snapshot per day. The app loads the "
        "latest complete snapshot at each (re)load. The day's observed weather stands in for "
        "the forecast a live system would use."
    ),
    ins={
        "flights_clean": dg.AssetIn(key("flights_clean"), partition_mapping=PREVIOUS_DAYS),
        "weather_clean": dg.AssetIn(key("weather_clean")),
        "planes": dg.AssetIn(key("planes")),
    },
    automation_condition=layer_automation(),
    **partitioned(DECLARATION),
)
def online_features(
    context: dg.AssetExecutionContext,
    online_store: TableSnapshotStore,
    flights_clean: Mapping[str, pd.DataFrame],
    weather_clean: Mapping[str, pd.DataFrame],
    planes: pd.DataFrame,
) -> dg.MaterializeResult:
    snapshots = online_store.snapshots()
    rows = {}
    for day in context.partition_keys:
        tables = lookup_tables(_history(flights_clean, day), weather_clean[day], planes)
        snapshots.write(context.asset_key.path, day, tables)
        rows = {name: len(frame) for name, frame in tables.items()}
    return dg.MaterializeResult(
        metadata={
            "location": snapshots.base.joinpath(*context.asset_key.path).as_posix(),
            **{f"rows/{name}": n for name, n in rows.items()},
        }
    )


data_assets = [
    *landed,
    clean_flights_assets,
    clean_weather_assets,
    flight_features,
    online_features,
]
