"""``batch_predictions``: the champion's prediction for every row of each feature partition,
with the version that made it; rescored when the features or the champion change."""

import dagster as dg
import pandas as pd

from ml_assets.automation import refresh_stale_partitions
from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.model_format import model_inputs
from ml_assets.deployment import registry
from ml_assets.deployment.layer import common
from resources.mlflow_tracking import MlflowTracking


def batch_schema(declaration: PipelineDeclaration, features: dg.TableSchema) -> dg.TableSchema:
    """The columns of ``batch_predictions``: the declared feature columns, the prediction and
    the version that made it."""
    by_name = {column.name: column for column in features.columns}
    prediction = declaration.serving.prediction
    if declaration.model.task == "binary_classification":
        scored = [
            dg.TableColumn(f"{prediction}_probability", "float64",
                           f"The champion's probability that {prediction} is 1."),
            dg.TableColumn(f"predicted_{prediction}", "bool",
                           "The champion's decision at its threshold chosen on validation."),
        ]  # fmt: skip
    else:
        scored = [
            dg.TableColumn(f"predicted_{prediction}", "float64", f"The champion's {prediction}.")
        ]
    return dg.TableSchema(
        columns=[
            *(by_name[c] for c in declaration.serving.batch_columns),
            *scored,
            dg.TableColumn("model_version", "string", "Registry version of the champion."),
        ]
    )


def build_batch_predictions(
    declaration: PipelineDeclaration, features_schema: dg.TableSchema
) -> dg.AssetsDefinition:
    """``batch_predictions`` of ``declaration``'s pipeline."""
    model = declaration.model
    name = model.registered_model_name
    inputs = model_inputs(declaration)
    prediction = declaration.serving.prediction

    @dg.asset(
        key=asset_key(declaration, "batch_predictions"),
        description=(
            f"The champion's {prediction} for every row of each {model.features_asset} "
            "partition, with the model version on every row; rescored when the features or "
            "the champion change."
        ),
        kinds={"pandas", "parquet"},
        ins={"features": dg.AssetIn(asset_key(declaration, model.features_asset))},
        deps=[asset_key(declaration, "deployed_endpoint")],
        partitions_def=partitions_definition(declaration.partitions),
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=refresh_stale_partitions(),
        metadata={"dagster/column_schema": batch_schema(declaration, features_schema)},
        **common(declaration),
    )
    def batch_predictions(
        context: dg.AssetExecutionContext,
        mlflow: MlflowTracking,
        features: dict[str, pd.DataFrame],
    ) -> dg.Output[dict[str, pd.DataFrame]]:
        from serving.predictors import load_version, resolve_alias

        mlflow.use()
        version = resolve_alias(name, registry.CHAMPION)
        loaded = load_version(name, version, inputs, model.task)
        scored = {}
        for key in context.partition_keys:
            rows = features[key]
            frame = rows.loc[:, list(declaration.serving.batch_columns)].reset_index(drop=True)
            values = loaded.predictor.predict({c: rows[c].to_numpy() for c in rows.columns})
            if model.task == "binary_classification":
                frame[f"{prediction}_probability"] = values
                frame[f"predicted_{prediction}"] = values >= loaded.threshold
            else:
                frame[f"predicted_{prediction}"] = values
            frame["model_version"] = version
            scored[key] = frame
        return dg.Output(
            scored,
            metadata={"model_version": version, "predictor": loaded.predictor.kind},
        )

    return batch_predictions
