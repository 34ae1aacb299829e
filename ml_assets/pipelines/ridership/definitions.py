"""The ridership pipeline as the platform loads it: its declaration and its data assets."""

from ml_assets.contract.pipeline import Pipeline
from ml_assets.pipelines import declaration, declaration_path
from ml_assets.pipelines.ridership.assets import data_assets
from ml_assets.pipelines.ridership.publish import FAULTS, publish
from ml_assets.pipelines.ridership.schemas import DAY_FEATURES

PIPELINE = Pipeline(
    declaration=declaration("ridership"),
    source_file=declaration_path("ridership"),
    data_assets=data_assets,
    feature_schema=DAY_FEATURES,
    publish=publish,
    faults=tuple(FAULTS),
)
