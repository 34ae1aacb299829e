"""``served_predictions``: what the prediction service answered, per partition, from its log.

The service appends each batch of predictions as new files in its partition's folder of the log
(``ml_assets.contract.prediction_log_layout``). A partition's materialization
reads every file of its folder and keeps each prediction once (a batch retried after a partial
write may be there twice), so re-materializing is idempotent and picks up what was logged
since. The prediction log sensor asks for it when a folder changes (it has no upstream asset:
the log is written by the services, outside Dagster).
"""

import dagster as dg

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.data.data_layers import partitioned
from ml_assets.monitoring.layer import common
from resources.prediction_log_store import PredictionLogStore

SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("request_id", "string", "The request's id (in its answer)."),
        dg.TableColumn("item_index", "int", "The item's position in the request."),
        dg.TableColumn("served_at", "timestamp", "When it was answered (UTC)."),
        dg.TableColumn("latency_ms", "float", "Time the version took for the request."),
        dg.TableColumn("model_version", "string", "The registry version that scored it."),
        dg.TableColumn("role", "string", "champion or challenger."),
        dg.TableColumn("stage", "string", "full, shadow or canary: how the version served."),
        dg.TableColumn("returned", "bool", "Whether this prediction was the answer."),
        dg.TableColumn("item_id", "string", "The item's id column (joins with outcomes)."),
        dg.TableColumn("score", "float", "The prediction (a classifier's probability)."),
        dg.TableColumn("request", "string", "The item's request fields, as JSON."),
    ]
)


def build(declaration: PipelineDeclaration) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(declaration, "served_predictions"),
        description=(
            f"Every prediction the {declaration.name} service made (champion and challenger, "
            "returned or in shadow), with its request, from the prediction log; each once."
        ),
        kinds={"pandas", "parquet"},
        metadata={"dagster/column_schema": SCHEMA},
        **partitioned(declaration),
        **common(declaration),
    )
    def served_predictions(
        context: dg.AssetExecutionContext, prediction_log: PredictionLogStore
    ) -> dg.Output[dict]:
        frames = {}
        for key in context.partition_keys:
            rows, files, duplicates = prediction_log.read(declaration.name, key)
            frames[key] = rows
            context.add_asset_metadata(
                {
                    "dagster/row_count": len(rows),
                    "requests": int(rows["request_id"].nunique()),
                    "returned": int(rows["returned"].sum()) if len(rows) else 0,
                    "log_files": files,
                    "duplicates_dropped": duplicates,
                    "versions": ", ".join(sorted(rows["model_version"].astype(str).unique())),
                },
                partition_key=key,
            )
        return dg.Output(frames)

    return served_predictions
