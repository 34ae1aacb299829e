"""A sensor that watches a pipeline's staged rollout and launches its next step when due.

Each tick reads the challenger's live figures from the service (``GET /model``) and asks
``staged_rollout.decide``; when the decision is not to wait, it requests a run of the
pipeline's rollout job, keyed by the version, its stage and when it was loaded, so each step
runs once (the job decides again on what it reads then).
"""

import dagster as dg

from jobs.rollout import rollout_job_name
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.deployment import staged_rollout
from resources.prediction_services import PredictionServices

INTERVAL_SECONDS = 15


def build_rollout_sensor(declaration: PipelineDeclaration) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{declaration.prefix}_rollout_sensor",
        job_name=rollout_job_name(declaration),
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Advance, promote or roll back a rollout of {declaration.name} when its "
        "live figures are in.",
    )
    def rollout_sensor(
        context: dg.SensorEvaluationContext, prediction_services: PredictionServices
    ) -> dg.SensorResult | dg.SkipReason:
        endpoint = prediction_services.endpoint(declaration.name)
        state = staged_rollout.challenger_state(endpoint)
        if state is None:
            return dg.SkipReason("no version is rolling out (or the service does not answer)")
        stage, stats = state
        decision = staged_rollout.decide(stage, stats, declaration.rollout)
        if decision.action == "wait":
            return dg.SkipReason(f"v{stats['version']} in {stage}: {decision.reason}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"{stats['version']}:{stage}:{stats['since']}",
                    tags={
                        "rollout/version": stats["version"],
                        "rollout/stage": stage,
                        "rollout/decision": decision.action,
                    },
                )
            ]
        )

    return rollout_sensor
