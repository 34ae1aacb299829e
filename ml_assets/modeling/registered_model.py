"""``registered_model``: a new registry version of the pipeline's model, aliased challenger."""

import dagster as dg

from ml_assets.automation import follow_upstream
from ml_assets.contract.model_format import THRESHOLD_TAG
from ml_assets.contract.names import CHALLENGER
from ml_assets.modeling.layer import CODE_VERSION, MODEL_ASSET_NAMES, ModelLayer
from resources.mlflow_tracking import MlflowTracking


def _materialized_code_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str:
    """The code version the latest materialization of ``key`` was made with."""
    event = instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    return (
        (materialization.tags or {}).get("dagster/code_version", "unknown")
        if materialization
        else "unknown"
    )


def build(layer: ModelLayer) -> dg.AssetsDefinition:
    model = layer.model
    name = model.registered_model_name

    @dg.asset(
        key=layer.key("registered_model"),
        description=f"A new version of {name} in the MLflow registry, aliased challenger.",
        kinds={"mlflow"},
        ins={
            "trained_model": dg.AssetIn(layer.key("trained_model")),
            "model_evaluation": dg.AssetIn(layer.key("model_evaluation")),
        },
        io_manager_key="json_io_manager",
        automation_condition=follow_upstream(),
        **layer.common(),
    )
    def registered_model(
        context: dg.AssetExecutionContext,
        mlflow: MlflowTracking,
        trained_model: dict,
        model_evaluation: dict,
    ) -> dg.Output[dict]:
        from ml_assets.modeling.tracking_logs import register

        upstream = (layer.features_asset, *(layer.key(n) for n in MODEL_ASSET_NAMES[:-1]))
        code_versions = {
            key.to_user_string(): _materialized_code_version(context.instance, key)
            for key in upstream
        }
        code_versions[context.asset_key.to_user_string()] = CODE_VERSION
        metric = model_evaluation["gate_metric"]
        tags = {
            "dagster_run_id": context.run.run_id,
            "feature_partitions": trained_model["feature_partitions"],
            "model_family": trained_model["family"],
            "task": model.task,
            f"test_{metric}": f"{model_evaluation['metrics']['model'][metric]:.6g}",
            **{f"code_version/{k}": str(v) for k, v in code_versions.items()},
        }
        if trained_model.get("threshold") is not None:
            tags[THRESHOLD_TAG] = repr(float(trained_model["threshold"]))
        mlflow.use()
        version = register(name, trained_model["model_uri"], tags, CHALLENGER)
        return dg.Output(
            {"name": name, "version": version, "alias": CHALLENGER, "tags": tags},
            metadata={"model": name, "version": version, "alias": CHALLENGER, **tags},
        )

    return registered_model
