"""The flights model: features, target and the declared settings in ``model.yaml``."""

from pathlib import Path

import yaml

from ml_assets.metadata import column_schema
from ml_assets.modeling.assets import ModelSpec
from ml_assets.modeling.estimators import Features
from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.assets import key
from ml_assets.pipelines.flights.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TARGET
from ml_assets.pipelines.flights.schemas import FLIGHT_FEATURES

SETTINGS = yaml.safe_load((Path(__file__).with_name("model.yaml")).read_text())

FLIGHTS_MODEL = ModelSpec(
    key_prefix=config.KEY_PREFIX,
    features_asset=key("flight_features"),
    features=Features(categorical=CATEGORICAL_FEATURES, numeric=NUMERIC_FEATURES),
    target=TARGET,
    baseline_column="route_arr_delay_mean_7d",
    error_by="dep_hour",
    settings=SETTINGS,
    owners=config.OWNERS,
    features_schema=column_schema(FLIGHT_FEATURES),
)
