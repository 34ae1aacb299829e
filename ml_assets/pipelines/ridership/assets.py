"""The ridership pipeline's data assets: landed monthly exports → raw → clean (+ rejected) →
features (with the declared history) and the online snapshot the service computes them from.
Generic factories only: the history is declared in ``pipeline.yaml``.
"""

from ml_assets.data.clean_and_rejected import clean_assets
from ml_assets.data.features_asset import features_asset
from ml_assets.data.history_snapshot import history_snapshot_asset
from ml_assets.data.sources import landed_assets
from ml_assets.pipelines import declaration
from ml_assets.pipelines.ridership.cleaning import clean_days
from ml_assets.pipelines.ridership.features import feature_frame
from ml_assets.pipelines.ridership.schemas import DAY_FEATURES, DAYS_CLEAN, DAYS_REJECTED, RAW_DAYS

DECLARATION = declaration("ridership")

data_assets = [
    *landed_assets(DECLARATION, {"boardings": RAW_DAYS}),
    clean_assets(
        DECLARATION,
        "boardings",
        clean_days,
        DAYS_CLEAN,
        DAYS_REJECTED,
        "Typed days of the month at Clark/Lake, one row per date, every value in its range.",
    ),
    features_asset(
        DECLARATION,
        "boardings_clean",
        feature_frame,
        DAY_FEATURES,
        "One row per day with what is known that morning: the calendar, the day's weather and "
        "games, and the station's riders of the two weeks before (lags of 7 and 14 days, the "
        "mean of the 7 days ending the day before); the day's riders are the target.",
    ),
    history_snapshot_asset(DECLARATION),
]
