"""Everything the flights pipeline contributes to the code location."""

import dagster as dg

from jobs.rollback import build_rollback_job
from ml_assets.deployment.assets import build_deployment_assets
from ml_assets.deployment.endpoint import ServingEndpoint
from ml_assets.modeling.assets import build_model_assets
from ml_assets.modeling.tracking import mlflow_tracking
from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.assets import data_assets, key
from ml_assets.pipelines.flights.model import FLIGHTS_MODEL
from ml_assets.pipelines.flights.serving import deploy_spec
from sensors.landing_zone import LandedSource, build_landing_zone_sensor
from serving.settings import is_local_service, serving_url

landing_zone_sensor = build_landing_zone_sensor(
    "flights_landing_zone_sensor",
    [
        *(LandedSource(name, key(name)) for name in config.REFERENCE_TABLES),
        LandedSource(config.FLIGHTS_SOURCE, key("raw_flights"), config.DAILY),
        LandedSource(config.WEATHER_SOURCE, key("raw_weather"), config.DAILY),
    ],
    run_config={"execution": {"config": {"in_process": {}}}},
)

daily_data_job = dg.define_asset_job(
    "flights_daily_data",
    selection=dg.AssetSelection.groups(
        "ingest", "clean", "features"
    ).required_multi_asset_neighbors()
    - dg.AssetSelection.assets(*(key(name) for name in config.REFERENCE_TABLES)),
    description="Raw, clean and feature partitions of the flights pipeline for a day or a range.",
)
reference_job = dg.define_asset_job(
    "flights_reference_tables",
    selection=dg.AssetSelection.assets(*(key(name) for name in config.REFERENCE_TABLES)),
    description="Reload the planes, airports and airlines reference tables.",
)

model_assets = build_model_assets(FLIGHTS_MODEL)

model_job = dg.define_asset_job(
    "flights_model",
    selection=dg.AssetSelection.groups("models"),
    description="Tune, train, evaluate and register the flights model on the current features.",
)

deploy = deploy_spec()
deployment_assets = build_deployment_assets(deploy)
rollback_job = build_rollback_job(deploy.model_name, deploy.key("deployed_endpoint"))

defs = dg.Definitions(
    assets=[*data_assets, *model_assets, *deployment_assets],
    resources={
        "mlflow": mlflow_tracking.configured(
            {"experiment_name": FLIGHTS_MODEL.settings["experiment_name"]}
        ),
        "endpoint": ServingEndpoint(url=serving_url(), start_if_down=is_local_service()),
    },
    sensors=[landing_zone_sensor],
    jobs=[daily_data_job, reference_job, model_job, rollback_job],
)
