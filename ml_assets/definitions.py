"""The code location: the platform's shared resources plus every registered pipeline."""

import dagster as dg

from ml_assets import pipelines
from ml_assets.executor import platform_executor
from ml_assets.monitoring.alerts import build_alerts_sensor
from ml_assets.platform import pipeline_definitions
from resources.platform import platform_resources

PIPELINES = [pipelines.load(name) for name in pipelines.names()]


def _platform() -> dg.Definitions:
    """Resources, executor and sensors every pipeline shares."""
    return dg.Definitions(
        # Steps in parallel processes forked from one per-run forkserver by default (a year-long
        # backfill runs its two clean steps side by side); a run may choose in_process, as the
        # landing-zone sensor's one-step runs do. ML_ASSETS_EXECUTOR=celery: Celery workers.
        executor=platform_executor(),
        resources=platform_resources([p.declaration for p in PIPELINES]),
        sensors=[
            dg.AutomationConditionSensorDefinition(
                "automation",
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                # every 10 s (at most once per 5-s daemon loop). Landed days reach their features
                # through the landing sensor's own runs; this brings up what they leave (later
                # days that read a changed day, models, deploys), one layer per tick, which is
                # why it is not slower. A tick evaluates every asset's condition in the code
                # server: ~1 s of CPU (README, "Sensors and automation")
                minimum_interval_seconds=10,
                # conditions of our own (PartitionsMaterialized) run where the code is
                use_user_code_server=True,
            ),
            build_alerts_sensor(),
        ],
    )


defs = dg.Definitions.merge(_platform(), *(pipeline_definitions(p) for p in PIPELINES))
