"""``rollback``: put the previous champion back live, on demand."""

import dagster as dg

from ml_assets.deployment import registry
from ml_assets.deployment.endpoint import ServingEndpoint
from ml_assets.modeling.tracking import use_platform_store


def build_rollback_job(model_name: str, endpoint_asset: dg.AssetKey) -> dg.JobDefinition:
    """A job that points ``champion`` back at ``previous_champion`` and reloads the service."""

    @dg.op(
        name="restore_previous_champion",
        description=f"Make {model_name}'s previous champion the champion and reload the service.",
    )
    def restore_previous_champion(context: dg.OpExecutionContext, endpoint: ServingEndpoint):
        use_platform_store()
        rolled_from, rolled_to = registry.roll_back(model_name)
        endpoint.ensure_running(context.log)
        served = endpoint.reload()
        if served.get("version") != rolled_to:
            raise dg.Failure(
                f"The registry's champion is v{rolled_to} again, but the service loaded "
                f"{served.get('version')}; re-execute this run once the service is healthy."
            )
        context.log_event(
            dg.AssetObservation(
                asset_key=endpoint_asset,
                metadata={"rolled_back_from": rolled_from, "version": rolled_to},
                description=f"rolled back from v{rolled_from} to v{rolled_to}",
            )
        )

    @dg.job(
        name="rollback",
        description=f"Restore {model_name}'s previous champion and reload the service.",
        tags={"kind": "deploy"},
    )
    def rollback() -> None:
        restore_previous_champion()

    return rollback
