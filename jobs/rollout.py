"""``<pipeline>_rollout``: take a staged rollout one step (advance, promote or roll back)."""

from typing import Literal

import dagster as dg
from pydantic import Field

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.deployment import staged_rollout
from resources.mlflow_tracking import MlflowTracking
from resources.prediction_log_store import PredictionLogStore
from resources.prediction_services import PredictionServices
from resources.warehouse import Warehouse


def rollout_job_name(declaration: PipelineDeclaration) -> str:
    return f"{declaration.prefix}_rollout"


class RolloutStep(dg.Config):
    action: Literal["auto", "promote", "roll_back"] = Field(
        default="auto",
        description="auto: what the declared bars decide on the challenger's live figures; "
        "promote or roll_back: a person's decision (rollout_comparison helps make it).",
    )


def build_rollout_job(declaration: PipelineDeclaration) -> dg.JobDefinition:
    """A job that reads the challenger's live figures from the service and carries out the
    decision, recording it as an observation of ``deployed_endpoint``."""
    model_name = declaration.model.registered_model_name
    endpoint_asset = asset_key(declaration, "deployed_endpoint")

    @dg.op(
        name=f"{declaration.prefix}_advance_rollout",
        description=f"Advance, promote or roll back the version of {model_name} rolling out.",
    )
    def advance_rollout(
        context: dg.OpExecutionContext,
        config: RolloutStep,
        mlflow: MlflowTracking,
        prediction_services: PredictionServices,
        prediction_log: PredictionLogStore,
        warehouse: Warehouse,
    ) -> None:
        mlflow.use()
        endpoint = prediction_services.endpoint(declaration.name)
        endpoint.ensure_running(context.log)
        state = staged_rollout.challenger_state(endpoint)
        if state is None:
            raise dg.Failure(f"No version of {model_name} is rolling out: nothing to do.")
        stage, stats = state
        if config.action == "auto":
            champion = (endpoint.describe() or {}).get("version")
            outcomes = staged_rollout.outcome_comparison(
                declaration, champion, stats["version"], prediction_log, warehouse
            )
            decision = staged_rollout.decide(stage, stats, declaration.rollout, outcomes)
        else:
            decision = staged_rollout.Decision(config.action, f"{config.action} by hand")
        if decision.action == "wait":
            context.log.info(f"v{stats['version']}: waiting ({decision.reason})")
            return
        metadata = staged_rollout.act(
            endpoint, model_name, stats["version"], stage, decision, context.log
        )
        measured = {
            f"rollout/{k}": v
            for k, v in stats.items()
            if k not in ("version", "run_id", "since") and v is not None
        }
        context.log_event(
            dg.AssetObservation(
                asset_key=endpoint_asset,
                metadata={**metadata, **measured},
                description=f"v{stats['version']}: {stage} → {metadata['rollout/stage']}: "
                f"{decision.reason}",
            )
        )

    @dg.job(
        name=rollout_job_name(declaration),
        description=f"Take the staged rollout of {model_name} one step.",
        tags={"kind": "deploy"},
    )
    def rollout() -> None:
        advance_rollout()

    return rollout
