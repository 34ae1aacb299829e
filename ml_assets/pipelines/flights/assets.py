"""The flights pipeline's data assets: landed files → raw → clean → features.

Partitioned assets handle every partition key of their run (one day, or a year in a
single-run backfill) and exchange ``dict[partition_key, DataFrame]`` with the IO manager.
"""

import io
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import date, timedelta

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.automation import refresh_stale_partitions
from ml_assets.checks import (
    CheckOutcome,
    report_per_partition,
    row_conservation_outcome,
    schema_outcome,
    schema_outcomes,
)
from ml_assets.cleaning import PARSE_ERROR, parse_landed_csv
from ml_assets.metadata import table_definition_metadata
from ml_assets.pipelines.flights import config, schemas
from ml_assets.pipelines.flights.cleaning import Cleaned, clean_flights, clean_weather
from ml_assets.pipelines.flights.features import FeatureLookups, lookup_tables
from resources.landing_zone import LandingZone
from resources.table_snapshots import TableSnapshotStore

INGEST, CLEAN, FEATURES = "ingest", "clean", "features"

LANDED_FILE_SCHEMA = "landed_file_schema"
LINES_PARSE = "lines_parse"
CLEAN_SCHEMA = "clean_schema"
ROWS_CONSERVED = "rows_conserved"
FEATURE_SCHEMA = "feature_schema"

PARTITIONED = {
    "partitions_def": config.DAILY,
    "backfill_policy": dg.BackfillPolicy.single_run(),
}


def key(name: str) -> dg.AssetKey:
    return dg.AssetKey([config.KEY_PREFIX, name])


def _partition_check(asset: str, name: str, description: str, blocking: bool = True):
    return dg.AssetCheckSpec(
        name,
        asset=key(asset),
        description=description,
        blocking=blocking,
        partitions_def=config.DAILY,
    )


def _lines_outcome(frame: pd.DataFrame) -> CheckOutcome:
    corrupt = frame[frame[PARSE_ERROR].notna()] if PARSE_ERROR in frame else frame.iloc[:0]
    return CheckOutcome(
        passed=corrupt.empty,
        description=f"{len(corrupt)} of {len(frame)} lines could not be parsed",
        metadata={
            "corrupt_lines": len(corrupt),
            "sample_corrupt_lines": dg.MetadataValue.md(
                corrupt.head(5).to_markdown(index=False) if len(corrupt) else "(none)"
            ),
        },
        severity=dg.AssetCheckSeverity.WARN,
    )


def _landed(name: str, schema: pa.DataFrameSchema, description: str) -> dict:
    """What every asset reading the landing zone declares."""
    return {
        "name": name,
        "key_prefix": config.KEY_PREFIX,
        "group_name": INGEST,
        "code_version": "1",
        "kinds": {"csv", "parquet"},
        "owners": config.OWNERS,
        "description": description,
        "metadata": table_definition_metadata(schema),
    }


def raw_daily_asset(
    source: str, schema: pa.DataFrameSchema, description: str
) -> dg.AssetsDefinition:
    """A daily export as landed: every line of the file, every value as text."""
    name = f"raw_{source}"

    @dg.asset(
        **_landed(name, schema, description),
        check_specs=[
            _partition_check(
                name, LANDED_FILE_SCHEMA, "The file has a header with every declared column."
            ),
            _partition_check(
                name, LINES_PARSE, "Every line splits into the header's fields.", blocking=False
            ),
        ],
        **PARTITIONED,
    )
    def raw(context: dg.AssetExecutionContext, landing_zone: LandingZone) -> Iterator:
        missing = [k for k in context.partition_keys if not landing_zone.exists(source, k)]
        if missing:
            raise dg.Failure(
                f"No {source} file has landed for {', '.join(missing[:10])}"
                f"{' …' if len(missing) > 10 else ''} (expected at "
                f"{landing_zone.uri(source, missing[0])}). Publish the day(s), then re-run.",
                metadata={"missing_days": len(missing)},
            )
        frames = {
            k: parse_landed_csv(landing_zone.read_bytes(source, k)) for k in context.partition_keys
        }
        yield dg.Output(
            frames,
            metadata={"landed_file": landing_zone.uri(source, context.partition_keys[0])}
            if len(frames) == 1
            else {},
        )
        yield from report_per_partition(
            context,
            key(name),
            LANDED_FILE_SCHEMA,
            schema_outcomes(schema, frames),
        )
        yield from report_per_partition(
            context, key(name), LINES_PARSE, {k: _lines_outcome(f) for k, f in frames.items()}
        )

    return raw


raw_flights = raw_daily_asset(
    config.FLIGHTS_SOURCE,
    schemas.RAW_FLIGHTS,
    "Flights that left NYC on the day, exactly as the upstream export landed them.",
)
raw_weather = raw_daily_asset(
    config.WEATHER_SOURCE,
    schemas.RAW_WEATHER,
    "Hourly weather at EWR, JFK and LGA on the day, exactly as landed.",
)


def reference_asset(name: str, schema: pa.DataFrameSchema, description: str) -> dg.AssetsDefinition:
    """A reference table landed whole: read, typed by pandas, checked against ``schema``."""

    @dg.asset(
        **_landed(name, schema, description),
        check_specs=[
            dg.AssetCheckSpec(
                LANDED_FILE_SCHEMA, asset=key(name), blocking=True, description=schema.name
            )
        ],
    )
    def reference(landing_zone: LandingZone) -> Iterator:
        if not landing_zone.exists(name, name):
            raise dg.Failure(f"{landing_zone.uri(name, name)} has not landed; publish it first.")
        frame = pd.read_csv(io.BytesIO(landing_zone.read_bytes(name, name)))
        yield dg.Output(frame)
        outcome = schema_outcome(schema, frame)
        yield dg.AssetCheckResult(
            check_name=LANDED_FILE_SCHEMA,
            passed=outcome.passed,
            description=outcome.description,
            metadata=outcome.metadata,
        )

    return reference


planes = reference_asset(
    "planes", schemas.PLANES, "Planes by tail number: year built, seats, engines (FAA registry)."
)
airports = reference_asset("airports", schemas.AIRPORTS, "Airports by FAA code with location.")
airlines = reference_asset("airlines", schemas.AIRLINES, "Airline names by carrier code.")


def clean_daily_assets(
    source: str,
    clean: Callable[[pd.DataFrame, date], Cleaned],
    clean_schema: pa.DataFrameSchema,
    rejected_schema: pa.DataFrameSchema,
    description: str,
) -> dg.AssetsDefinition:
    """``<source>_clean`` and ``<source>_rejected``: every raw row ends up in exactly one."""
    raw_key, clean_key, rejected_key = (
        key(f"raw_{source}"),
        key(f"{source}_clean"),
        key(f"{source}_rejected"),
    )
    common = {
        "group_name": CLEAN,
        "code_version": "1",
        "kinds": {"pandas", "parquet"},
        "owners": config.OWNERS,
        "automation_condition": refresh_stale_partitions(),
    }

    @dg.multi_asset(
        name=f"clean_{source}",
        outs={
            "clean": dg.AssetOut(
                key=clean_key,
                description=description,
                metadata=table_definition_metadata(clean_schema),
                **common,
            ),
            "rejected": dg.AssetOut(
                key=rejected_key,
                description=f"Raw {source} rows that a cleaning rule rejected, with the rule.",
                metadata=table_definition_metadata(rejected_schema),
                **common,
            ),
        },
        partitions_def=config.DAILY,
        ins={"raw": dg.AssetIn(raw_key)},
        check_specs=[
            _partition_check(f"{source}_clean", CLEAN_SCHEMA, f"Conforms to {clean_schema.name}."),
            _partition_check(
                f"{source}_clean", ROWS_CONSERVED, "raw rows = clean rows + rejected rows"
            ),
        ],
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def clean_assets(context: dg.AssetExecutionContext, raw: dict[str, pd.DataFrame]) -> Iterator:
        results = {k: clean(raw[k], date.fromisoformat(k)) for k in context.partition_keys}
        rules = Counter(
            rule for r in results.values() for rule in r.rejected["rejection_rule"].tolist()
        )
        notes = Counter()
        for r in results.values():
            notes.update(r.notes)
        yield dg.Output(
            {k: r.clean for k, r in results.items()},
            output_name="clean",
            metadata={f"rule/{name}": int(n) for name, n in notes.items()},
        )
        yield dg.Output(
            {k: r.rejected for k, r in results.items()},
            output_name="rejected",
            metadata={"rejections_by_rule": dict(rules)},
        )
        yield from report_per_partition(
            context,
            clean_key,
            CLEAN_SCHEMA,
            schema_outcomes(clean_schema, {k: r.clean for k, r in results.items()}),
        )
        yield from report_per_partition(
            context,
            clean_key,
            ROWS_CONSERVED,
            {
                k: row_conservation_outcome(len(raw[k]), r.kept_raw_rows, len(r.rejected))
                for k, r in results.items()
            },
        )

    return clean_assets


clean_flights_assets = clean_daily_assets(
    config.FLIGHTS_SOURCE,
    clean_flights,
    schemas.FLIGHTS_CLEAN,
    schemas.FLIGHTS_REJECTED,
    "Typed, deduplicated flights of the day; cancelled and diverted flights kept and flagged.",
)
clean_weather_assets = clean_daily_assets(
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
    key_prefix=config.KEY_PREFIX,
    group_name=FEATURES,
    code_version="2",
    kinds={"pandas", "parquet"},
    owners=config.OWNERS,
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
        _partition_check("flight_features", FEATURE_SCHEMA, "Conforms to flight_features.")
    ],
    automation_condition=refresh_stale_partitions(),
    **PARTITIONED,
)
def flight_features(
    context: dg.AssetExecutionContext,
    flights_clean: dict[str, pd.DataFrame],
    weather_clean: dict[str, pd.DataFrame],
    planes: pd.DataFrame,
) -> Iterator:
    features = {
        day: FeatureLookups(
            **lookup_tables(_history(flights_clean, day), weather_clean[day], planes)
        ).frame(flights_clean[day])
        for day in context.partition_keys
    }
    yield dg.Output(features)
    yield from report_per_partition(
        context,
        context.asset_key,
        FEATURE_SCHEMA,
        schema_outcomes(schemas.FLIGHT_FEATURES, features),
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
    key_prefix=config.KEY_PREFIX,
    group_name=FEATURES,
    code_version="1",
    kinds={"pandas", "parquet"},
    owners=config.OWNERS,
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
    automation_condition=refresh_stale_partitions(),
    **PARTITIONED,
)
def online_features(
    context: dg.AssetExecutionContext,
    online_store: TableSnapshotStore,
    flights_clean: dict[str, pd.DataFrame],
    weather_clean: dict[str, pd.DataFrame],
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
    raw_flights,
    raw_weather,
    planes,
    airports,
    airlines,
    clean_flights_assets,
    clean_weather_assets,
    flight_features,
    online_features,
]
