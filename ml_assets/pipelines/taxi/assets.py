"""The taxi pipeline's data assets: landed monthly exports → raw → clean (+ rejected) →
features.

Partitioned assets handle every month of their run (one, or all four in a single-run backfill)
and exchange ``dict[partition_key, DataFrame]`` with the IO manager.
"""

from ml_assets.data.clean_and_rejected import clean_assets
from ml_assets.data.features_asset import features_asset
from ml_assets.data.sources import landed_assets
from ml_assets.pipelines import declaration
from ml_assets.pipelines.taxi.cleaning import clean_trips
from ml_assets.pipelines.taxi.features import feature_frame
from ml_assets.pipelines.taxi.schemas import (
    RAW_TRIPS,
    TRIP_FEATURES,
    TRIPS_CLEAN,
    TRIPS_REJECTED,
)

DECLARATION = declaration("taxi")


data_assets = [
    *landed_assets(DECLARATION, {"trips": RAW_TRIPS}),
    clean_assets(
        DECLARATION,
        "trips",
        clean_trips,
        TRIPS_CLEAN,
        TRIPS_REJECTED,
        "Typed, deduplicated trips of the month, every value in its declared range and domain.",
    ),
    features_asset(
        DECLARATION,
        "trips_clean",
        feature_frame,
        TRIP_FEATURES,
        "One row per clean trip of the month with what is known when it ends: company, "
        "weekday, hour, distance and whether it stayed local; whether the rider tipped is the "
        "target.",
    ),
]
