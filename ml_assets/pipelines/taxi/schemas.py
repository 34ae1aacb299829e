"""Pandera schemas of the taxi pipeline's tables, with a description for every column.

The descriptions are what the Dagster UI shows as each asset's column schema.
"""

from collections.abc import Sequence

import pandera.pandas as pa

from ml_assets.data.schemas import flag_columns, range_checks, raw_schema, rejected_schema
from ml_assets.pipelines.taxi.cleaning import DAYS, MONTHS, TRIPS
from ml_assets.pipelines.taxi.features import TARGET

TRIP_DESCRIPTIONS = {
    "trip_id": "Trip identifier in the export (the data set's row name).",
    "tip": "Whether the rider tipped: yes or no.",
    "distance": "Trip distance in miles, as metered.",
    "company": "Taxi company; small companies are grouped as 'other'.",
    "local": "Whether the trip began and ended in the same community area: yes or no.",
    "dow": "Day of the week the trip started, Mon … Sun.",
    "month": "Month the trip started, Jan … Dec (the partition's month).",
    "hour": "Local hour the trip started, 0-23.",
}


def _range(column: str) -> Sequence[pa.Check]:
    return range_checks(column, TRIPS.ranges)


RAW_TRIPS = raw_schema("raw_trips", TRIP_DESCRIPTIONS)
"""A landed monthly export as text: every declared column present, one row per trip."""

TRIPS_CLEAN = pa.DataFrameSchema(
    {
        "trip_id": pa.Column("string", unique=True, description=TRIP_DESCRIPTIONS["trip_id"]),
        "tip": pa.Column(bool, description="The rider tipped. The model's target."),
        "distance": pa.Column(
            "float64", _range("distance"), description=TRIP_DESCRIPTIONS["distance"]
        ),
        "company": pa.Column("string", description=TRIP_DESCRIPTIONS["company"]),
        "local": pa.Column(
            bool, description="The trip began and ended in the same community area."
        ),
        "dow": pa.Column("string", pa.Check.isin(DAYS), description=TRIP_DESCRIPTIONS["dow"]),
        "month": pa.Column("string", pa.Check.isin(MONTHS), description=TRIP_DESCRIPTIONS["month"]),
        "hour": pa.Column("int64", _range("hour"), description=TRIP_DESCRIPTIONS["hour"]),
        **flag_columns(TRIPS),
    },
    name="trips_clean",
    strict=True,
)

TRIPS_REJECTED = rejected_schema("trips_rejected", TRIP_DESCRIPTIONS)
"""Trips a cleaning rule rejected: the values as landed and the rule that rejected them."""

TRIP_FEATURES = pa.DataFrameSchema(
    {
        "trip_id": pa.Column("string", unique=True, description=TRIP_DESCRIPTIONS["trip_id"]),
        "company": pa.Column("string", description=TRIP_DESCRIPTIONS["company"]),
        "dow": pa.Column("string", pa.Check.isin(DAYS), description=TRIP_DESCRIPTIONS["dow"]),
        "distance": pa.Column(
            "float64", _range("distance"), description="Trip miles (float32 precision)."
        ),
        "hour": pa.Column("float64", _range("hour"), description=TRIP_DESCRIPTIONS["hour"]),
        "local": pa.Column(
            "float64",
            pa.Check.isin([0.0, 1.0]),
            description="1 if the trip began and ended in the same community area.",
        ),
        TARGET: pa.Column(
            "int64", pa.Check.isin([0, 1]), description="Target: 1 if the rider tipped."
        ),
    },
    name="trip_features",
    strict=True,
)
