"""``<pipeline>_rollback``: put a pipeline's previous champion back live, on demand."""

import dagster as dg

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.deployment import registry
from ml_assets.deployment.going_live import undone_on_failure
from resources.mlflow_tracking import MlflowTracking
from resources.prediction_services import PredictionServices


def build_rollback_job(declaration: PipelineDeclaration) -> dg.JobDefinition:
    """A job that points ``champion`` back at ``previous_champion`` and reloads the service;
    when the service cannot serve it, the aliases are put back and the job fails."""
    model_name = declaration.model.registered_model_name
    endpoint_asset = asset_key(declaration, "deployed_endpoint")

    @dg.op(
        name=f"{declaration.prefix}_restore_previous_champion",
        description=f"Make {model_name}'s previous champion the champion and reload the service.",
    )
    def restore_previous_champion(
        context: dg.OpExecutionContext,
        mlflow: MlflowTracking,
        prediction_services: PredictionServices,
    ) -> None:
        mlflow.use()
        endpoint = prediction_services.endpoint(declaration.name)
        # before the registry changes: a service that is down or not this pipeline's changes nothing
        endpoint.ensure_running(context.log)
        before = registry.roll_back(model_name)
        rolled_from, rolled_to = str(before.champion), str(before.previous)
        with undone_on_failure(
            endpoint, model_name, before, rolled_to,
            f"Rolling {model_name} back from v{rolled_from} to v{rolled_to}", context.log,
        ):  # fmt: skip
            endpoint.reload_champion(rolled_to)
        if before.champion is not None:
            registry.mark_rolled_back(model_name, before.champion)
        context.log_event(
            dg.AssetObservation(
                asset_key=endpoint_asset,
                metadata={"rolled_back_from": rolled_from, "version": rolled_to},
                description=f"rolled back from v{rolled_from} to v{rolled_to}",
            )
        )

    @dg.job(
        name=f"{declaration.prefix}_rollback",
        description=f"Restore {model_name}'s previous champion and reload the service.",
        tags={"kind": "deploy"},
    )
    def rollback() -> None:
        restore_previous_champion()

    return rollback
