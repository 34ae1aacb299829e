"""What the platform builds for every pipeline from its declaration: the model, deploy and
monitor layers, the landing-zone, rollout and prediction-log sensors and the pipeline's jobs."""

import dagster as dg

from jobs.rollback import build_rollback_job
from jobs.rollout import build_rollout_job
from ml_assets.contract.pipeline import Pipeline
from ml_assets.data.assets import CLEAN, FEATURES, INGEST, group
from ml_assets.data.metadata import column_schema
from ml_assets.deployment.assets import build_deployment_assets
from ml_assets.executor import one_step_run_config
from ml_assets.modeling.assets import build_model_assets
from ml_assets.modeling.layer import MODELS
from ml_assets.monitoring.assets import build_monitoring_assets
from ml_assets.pipelines import serving_hooks
from sensors.landing_zone import build_landing_zone_sensor, landed_sources
from sensors.prediction_log import build_prediction_log_sensor
from sensors.rollout import build_rollout_sensor

IN_PROCESS = one_step_run_config()
"""Run config of one-step runs, which gain nothing from step processes."""


def pipeline_definitions(pipeline: Pipeline) -> dg.Definitions:
    """The pipeline's data assets plus everything the platform adds to them."""
    declaration = pipeline.declaration
    prefix = declaration.prefix
    features_schema = column_schema(pipeline.feature_schema)
    reference_tables = dg.AssetSelection.assets(
        *(declaration.key(s.name) for s in declaration.sources if not s.partitioned)
    )
    layers = dg.AssetSelection.groups(
        *(group(declaration, layer) for layer in (INGEST, CLEAN, FEATURES))
    )
    jobs = [
        dg.define_asset_job(
            f"{prefix}_data",
            selection=layers.required_multi_asset_neighbors() - reference_tables,
            description=f"Raw, clean and feature partitions of {declaration.name}.",
        ),
        dg.define_asset_job(
            f"{prefix}_model",
            selection=dg.AssetSelection.groups(f"{prefix}_{MODELS}"),
            description=f"Tune, train, evaluate and register the {declaration.name} model.",
        ),
        build_rollback_job(declaration),
        build_rollout_job(declaration),
    ]
    if any(not s.partitioned for s in declaration.sources):
        jobs.append(
            dg.define_asset_job(
                f"{prefix}_reference_tables",
                selection=reference_tables,
                description=f"Reload the reference tables of {declaration.name}.",
            )
        )
    return dg.Definitions(
        assets=[
            *pipeline.data_assets,
            *build_model_assets(declaration, features_schema),
            *build_deployment_assets(declaration, serving_hooks(declaration.name), features_schema),
            *build_monitoring_assets(declaration),
        ],
        sensors=[
            build_landing_zone_sensor(
                f"{prefix}_landing_zone_sensor", landed_sources(declaration), run_config=IN_PROCESS
            ),
            build_rollout_sensor(declaration),
            build_prediction_log_sensor(declaration, run_config=IN_PROCESS),
        ],
        jobs=jobs,
    )
