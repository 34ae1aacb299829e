"""``trained_model``: the study's best configuration refit on train + validation, in MLflow."""

import dagster as dg
import pandas as pd

from ml_assets.automation import follow_upstream
from ml_assets.modeling.layer import PARTITION_COLUMN, SPLIT_COLUMN, ModelLayer
from resources.mlflow_tracking import MlflowTracking


def build(layer: ModelLayer) -> dg.AssetsDefinition:
    model = layer.model
    threshold_note = (
        "; the decision threshold is chosen on validation by the declared rule"
        if model.task == "binary_classification"
        else ""
    )

    @dg.asset(
        key=layer.key("trained_model"),
        description=(
            "The study's best configuration refit on train + validation, logged to MLflow with "
            f"its ONNX export when that predicts the same{threshold_note}."
        ),
        kinds={"scikitlearn", "mlflow"},
        ins={
            "training_set": dg.AssetIn(layer.key("training_set")),
            "hyperparameter_study": dg.AssetIn(layer.key("hyperparameter_study")),
        },
        io_manager_key="json_io_manager",
        automation_condition=follow_upstream(),
        **layer.common(),
    )
    def trained_model(
        context: dg.AssetExecutionContext,
        mlflow: MlflowTracking,
        training_set: pd.DataFrame,
        hyperparameter_study: dict,
    ) -> dg.Output[dict]:
        from ml_assets.modeling.tracking_logs import log_fitted_model

        with mlflow.dagster_run(context, model.experiment):
            handle = log_fitted_model(
                layer, hyperparameter_study["best_params"], training_set, SPLIT_COLUMN
            )
        handle["feature_partitions"] = (
            f"{training_set[PARTITION_COLUMN].min()}…{training_set[PARTITION_COLUMN].max()}"
        )
        return dg.Output(
            handle,
            metadata={
                "family": handle["family"],
                "params": handle["params"],
                "mlflow_run_id": handle["run_id"],
                "model_uri": handle["model_uri"],
                "trained_rows": handle["trained_rows"],
                "skops_trusted_types": handle["skops_trusted_types"],
                "onnx": handle["onnx"],
                **(
                    {"decision_threshold": handle["threshold"]}
                    if handle.get("threshold") is not None
                    else {}
                ),
            },
        )

    return trained_model
