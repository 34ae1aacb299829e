"""``deployed_endpoint``: the newly registered version put live.

The first version becomes the champion at once; a later one starts its staged rollout beside
the champion (in shadow, as ``rollout`` declares: ``staged_rollout``; the rollout sensor takes
it on to the canary and to full, or back). Either way the running service loads it and is
smoke-tested on it (``smoke_test``). On any failure the service is put back as it was and the
step fails saying what went wrong, so a bad model never serves.
"""

import dagster as dg

from ml_assets.automation import deploy_new_registrations
from ml_assets.contract.dagster_terms import asset_key, declared_section, run_config
from ml_assets.contract.declaration import Deploy, PipelineDeclaration
from ml_assets.contract.model_format import model_inputs
from ml_assets.contract.names import FULL
from ml_assets.contract.pipeline import ServingHooks
from ml_assets.deployment import registry, staged_rollout
from ml_assets.deployment.going_live import undone_on_failure
from ml_assets.deployment.layer import common
from ml_assets.deployment.smoke import smoke_test
from resources.mlflow_tracking import MlflowTracking
from resources.prediction_services import PredictionServices
from resources.warehouse import Warehouse


def build_deployed_endpoint(
    declaration: PipelineDeclaration, hooks: ServingHooks
) -> dg.AssetsDefinition:
    """``deployed_endpoint`` of ``declaration``'s pipeline."""
    name = declaration.model.registered_model_name
    inputs = model_inputs(declaration)
    DeployConfig = run_config(
        declaration.deploy, f"{declaration.prefix.title().replace('_', '')}Deploy"
    )

    @dg.asset(
        key=asset_key(declaration, "deployed_endpoint"),
        description=(
            f"The live prediction endpoint of {declaration.name}: the registered version is "
            "loaded and smoke-tested (parity with the registry, latency budget), as the first "
            "champion or in a staged rollout beside the champion (shadow, canary, full; the "
            "rollout sensor decides on its live figures); undone when any step fails."
        ),
        kinds={"fastapi", "mlflow"},
        ins={"registered_model": dg.AssetIn(asset_key(declaration, "registered_model"))},
        io_manager_key="json_io_manager",
        automation_condition=deploy_new_registrations(),
        **common(declaration),
    )
    def deployed_endpoint(
        context: dg.AssetExecutionContext,
        config: DeployConfig,
        mlflow: MlflowTracking,
        prediction_services: PredictionServices,
        warehouse: Warehouse,
        registered_model: dict,
    ) -> dg.Output[dict]:
        deploy = declared_section(config, Deploy)
        mlflow.use()
        endpoint = prediction_services.endpoint(declaration.name)
        version = str(registered_model["version"])

        def smoke(served: dict) -> dict:
            return smoke_test(
                declaration, hooks, inputs, endpoint, served, deploy, version, warehouse
            )

        endpoint.ensure_running(context.log)
        champion = registry.aliases(name).champion
        staged = deploy.staged and champion not in (None, version)
        if staged and staged_rollout.first_stage(declaration.rollout) != FULL:
            stage = staged_rollout.start(endpoint, name, version, declaration.rollout)
            served = endpoint.describe() or {}
            context.log.info(f"{name}: v{version} in {stage} beside champion v{champion}")
            try:
                smoked = smoke(served)
            except Exception as error:
                reason = f"{type(error).__name__}: {error}"
                staged_rollout.take_out(endpoint, name, version, reason)
                raise dg.Failure(
                    f"The {stage} of {name} v{version} failed its smoke test and was rolled "
                    f"back: {reason}. The service serves v{champion} alone."
                ) from error
            previous = champion
        else:
            before = registry.promote(name, version)
            previous, stage = before.champion, FULL
            context.log.info(f"{name}: champion v{version} (previous: v{previous})")
            with undone_on_failure(
                endpoint, name, before, version, f"Deploying {name} v{version}", context.log
            ):
                served = endpoint.reload_champion(version)
                smoked = smoke(served)
            registry.set_stage(name, version, FULL)
        handle = {
            "name": name,
            "version": version,
            "previous_version": previous,
            "stage": stage,
            "url": endpoint.url,
            "predictor": served["predictor"],
            "snapshot": served.get("snapshot"),
            "smoke_test": smoked,
        }
        return dg.Output(
            handle,
            metadata={
                "url": dg.MetadataValue.url(endpoint.url),
                "version": version,
                "previous_version": str(previous),
                "rollout/stage": stage,
                "champion": version if stage == FULL else str(champion),
                "predictor": served["predictor"],
                "snapshot": str(served.get("snapshot")),
                **{f"smoke/{k}": v for k, v in smoked.items()},
            },
        )

    return deployed_endpoint
