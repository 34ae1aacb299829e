"""The taxi pipeline as the platform loads it: its declaration and its data assets."""

from ml_assets.contract.pipeline import Pipeline
from ml_assets.pipelines import declaration, declaration_path
from ml_assets.pipelines.taxi.assets import data_assets
from ml_assets.pipelines.taxi.publish import FAULTS, publish, publish_to_stream
from ml_assets.pipelines.taxi.schemas import TRIP_FEATURES

PIPELINE = Pipeline(
    declaration=declaration("taxi"),
    source_file=declaration_path("taxi"),
    data_assets=data_assets,
    feature_schema=TRIP_FEATURES,
    publish=publish,
    faults=tuple(FAULTS),
    publish_to_stream=publish_to_stream,
)
