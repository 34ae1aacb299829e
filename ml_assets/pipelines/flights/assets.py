"""The flights pipeline's data assets: landed files → raw → clean (+ rejected) → features
(with the declared history and reads) and the online feature snapshot the prediction service
reads. Generic factories only: what the features read is declared in ``pipeline.yaml``.
"""

import dagster as dg

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.data.clean_and_rejected import clean_assets
from ml_assets.data.features_asset import features_asset
from ml_assets.data.history_snapshot import history_snapshot_asset
from ml_assets.data.sources import landed_assets
from ml_assets.pipelines.flights import config, schemas
from ml_assets.pipelines.flights.cleaning import clean_flights, clean_weather
from ml_assets.pipelines.flights.features import feature_frame, lookup_tables

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

flight_features = features_asset(
    DECLARATION,
    "flights_clean",
    feature_frame,
    schemas.FLIGHT_FEATURES,
    "One row per scheduled flight with what is known at scheduling time: calendar, route, "
    "plane, origin weather at the departure hour and recent delays on the route and carrier "
    f"(previous {config.TRAILING_DAYS} days only); the arrival delay is the target column.",
    code_version="2",
)
online_features = history_snapshot_asset(
    DECLARATION,
    lookup_tables,
    "What the serving app looks a flight up in to compute its features online: the day's "
    "origin weather, the plane table and the recent route and carrier delay statistics "
    f"(previous {config.TRAILING_DAYS} days), as one snapshot per day. The app loads the "
    "latest complete snapshot at each (re)load. The day's observed weather stands in for "
    "the forecast a live system would use.",
)


data_assets = [
    *landed,
    clean_flights_assets,
    clean_weather_assets,
    flight_features,
    online_features,
]
