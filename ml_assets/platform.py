"""What the platform builds for every pipeline from its declaration: the model, deploy and
monitor layers, the landing-zone, sql-source, stream-source, rollout and prediction-log sensors
and the pipeline's jobs; and the code location of a set of pipelines, with what they share
(resources, the executor, the automation, history-refresh and alerts sensors)."""

from collections.abc import Sequence

import dagster as dg

from jobs.rollback import build_rollback_job
from jobs.rollout import build_rollout_job
from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import SqlSource, StreamSource
from ml_assets.contract.pipeline import Pipeline
from ml_assets.data.data_layers import CLEAN, FEATURES, INGEST, group
from ml_assets.data.metadata import column_schema
from ml_assets.deployment.batch_predictions import build_batch_predictions
from ml_assets.deployment.deployed_endpoint import build_deployed_endpoint
from ml_assets.executor import one_step_run_config, platform_executor
from ml_assets.modeling.assets import build_model_assets
from ml_assets.modeling.layer import MODELS
from ml_assets.monitoring.alerts import build_alerts_sensor
from ml_assets.monitoring.assets import build_monitoring_assets
from ml_assets.pipelines import serving_hooks
from resources.builder import platform_resources
from sensors.history_refresh import build_history_refresh_sensor
from sensors.landing_zone import build_landing_zone_sensor, landed_sources
from sensors.prediction_log import build_prediction_log_sensor
from sensors.rollout import build_rollout_sensor
from sensors.sql_source import build_sql_source_sensor
from sensors.stream_source import build_stream_source_sensor

IN_PROCESS = one_step_run_config()
"""Run config of one-step runs, which gain nothing from step processes."""


def pipeline_definitions(pipeline: Pipeline) -> dg.Definitions:
    """The pipeline's data assets plus everything the platform adds to them."""
    declaration = pipeline.declaration
    prefix = declaration.prefix
    features_schema = column_schema(pipeline.feature_schema)
    reference_tables = dg.AssetSelection.assets(
        *(asset_key(declaration, s.name) for s in declaration.sources if not s.partitioned)
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
            build_deployed_endpoint(declaration, serving_hooks(declaration.name)),
            build_batch_predictions(declaration, features_schema),
            *build_monitoring_assets(declaration),
        ],
        sensors=[
            build_landing_zone_sensor(
                f"{prefix}_landing_zone_sensor", landed_sources(declaration), run_config=IN_PROCESS
            ),
            *(
                build_sql_source_sensor(declaration, source)
                for source in declaration.sources
                if isinstance(source, SqlSource) and source.changed_column
            ),
            *(
                build_stream_source_sensor(declaration, source, run_config=IN_PROCESS)
                for source in declaration.sources
                if isinstance(source, StreamSource)
            ),
            build_rollout_sensor(declaration),
            build_prediction_log_sensor(declaration, run_config=IN_PROCESS),
        ],
        jobs=jobs,
    )


def _shared(pipelines: Sequence[Pipeline]) -> dg.Definitions:
    """Resources, executor and sensors every pipeline shares."""
    return dg.Definitions(
        # Steps in parallel processes forked from one per-run forkserver by default (a year-long
        # backfill runs its two clean steps side by side); a run may choose in_process, as the
        # landing-zone sensor's one-step runs do. ML_ASSETS_EXECUTOR=celery: Celery workers.
        executor=platform_executor(),
        resources=platform_resources([p.declaration for p in pipelines]),
        sensors=[
            dg.AutomationConditionSensorDefinition(
                "automation",
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                # every 10 s (at most once per 5-s daemon loop). Landed days reach their features
                # through the landing sensor's own runs; this brings up what they leave (later
                # days that read a changed day, models, deploys), one layer per tick, which is
                # why it is not slower. A tick evaluates every asset's condition in the code
                # server: ~1 s of CPU (docs/benchmarks.md)
                minimum_interval_seconds=10,
                # conditions of our own (PartitionsMaterialized) run where the code is
                use_user_code_server=True,
            ),
            build_history_refresh_sensor([p.declaration for p in pipelines], run_config=IN_PROCESS),
            build_alerts_sensor(),
        ],
    )


def code_location(pipelines: Sequence[Pipeline]) -> dg.Definitions:
    """The definitions of ``pipelines`` and what they share, as the code location
    (``ml_assets.definitions``) builds them for the registered ones and ``ml-assets pipelines``
    for each pipeline alone, to validate it."""
    return dg.Definitions.merge(_shared(pipelines), *(pipeline_definitions(p) for p in pipelines))
