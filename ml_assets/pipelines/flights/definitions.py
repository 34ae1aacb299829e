"""The flights pipeline as the platform loads it: its declaration and its data assets."""

from ml_assets.contract.pipeline import Pipeline
from ml_assets.pipelines import declaration_path
from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.assets import data_assets
from ml_assets.pipelines.flights.publish import (
    FAULTS,
    publish,
    publish_to_api,
    publish_to_databases,
)
from ml_assets.pipelines.flights.schemas import FLIGHT_FEATURES

PIPELINE = Pipeline(
    declaration=config.DECLARATION,
    source_file=declaration_path("flights"),
    data_assets=data_assets,
    feature_schema=FLIGHT_FEATURES,
    publish=publish,
    faults=tuple(FAULTS),
    publish_to_databases=publish_to_databases,
    publish_to_api=publish_to_api,
)
