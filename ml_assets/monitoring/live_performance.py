"""``live_performance``: served and batch predictions against the outcomes that landed since.

A partition's rows are its predictions (batch: the champion's, for every feature row; served:
every version's, from the prediction log), each beside its outcome from the features asset
(NaN until it lands). Its metadata, plotted over partitions in the UI, gives per source and
version the predictions, their coverage (the share with an outcome) and the task's live
metrics, beside the version's own test figures.

The check (``live_performance_within_bar``, declared WARN or blocking) pools the window of
``monitoring.window_partitions`` partitions ending at the checked one and compares the
champion's live metric with its test figure: it fails when the live figure is worse by more
than ``monitoring.max_degradation``. Only the predictions callers got are pooled (served,
then batch for items not served), only of partitions after the ones the version trained on,
and the check passes as undecided with fewer than ``monitoring.min_outcomes`` outcomes. A
failure starts retraining (``ml_assets.automation.live_performance_degraded``).
"""

from collections.abc import Iterator, Mapping
from functools import cache, lru_cache
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from ml_assets.automation import refresh_stale_partitions
from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.names import LIVE_PERFORMANCE_CHECK
from ml_assets.data.checks import CheckOutcome, report_per_partition
from ml_assets.data.data_layers import partition_check, partitioned
from ml_assets.monitoring.layer import MAY_BE_MISSING, common, window_mapping
from ml_assets.monitoring.outcomes import (
    SERVED,
    degradation,
    last_trained_partition,
    live_predictions,
    metric_values,
    scored_outcomes,
    window_keys,
)
from resources.mlflow_tracking import MlflowTracking
from serving.spec import score_field

SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("partition", "string", "The partition the outcome lands in."),
        dg.TableColumn("source", "string", "served (the service's log) or batch."),
        dg.TableColumn("model_version", "string", "The registry version that predicted."),
        dg.TableColumn("role", "string", "champion or challenger."),
        dg.TableColumn("stage", "string", "full, shadow or canary."),
        dg.TableColumn("returned", "bool", "Whether the caller got this prediction."),
        dg.TableColumn("item_id", "string", "The item's id."),
        dg.TableColumn("score", "float", "The prediction (a classifier's probability)."),
        dg.TableColumn("outcome", "float", "The actual target; NaN until it lands."),
    ]
)


class VersionFigures:
    """A registered version's test figures and the last partition it trained on, read from
    MLflow once per version per run."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.figures = cache(self._figures)

    def _figures(self, version: str) -> tuple[dict[str, float], str | None]:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        registered = client.get_model_version(self.name, version)
        metrics = client.get_run(registered.run_id).data.metrics
        tests = {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")}
        return tests, last_trained_partition(registered.tags.get("feature_partitions"))


def _partition_metadata(task: str, rows: pd.DataFrame, tests: dict[str, float]) -> dict:
    """Per source and version: predictions, coverage and live metrics; the champion's test
    figures beside them."""
    metadata: dict[str, Any] = {"dagster/row_count": len(rows)}
    table = []
    for (source, version, role), group in rows.groupby(["source", "model_version", "role"]):
        known = int(group["outcome"].notna().sum())
        values = metric_values(
            task, group["outcome"].to_numpy(dtype="float64"), group["score"].to_numpy()
        )
        table.append(
            {"source": source, "version": version, "role": role, "predictions": len(group),
             "outcomes": known, "coverage": known / len(group), **values}
        )  # fmt: skip
        if role == "champion":
            metadata[f"{source}/predictions"] = len(group)
            metadata[f"{source}/coverage"] = known / len(group)
            for metric, value in values.items():
                if value is not None:
                    metadata[f"{source}/{metric}"] = float(value)
    for metric, value in tests.items():
        metadata[f"test/{metric}"] = float(value)
    if table:
        metadata["by_version"] = dg.MetadataValue.md(
            pd.DataFrame(table).round(4).to_markdown(index=False)
        )
    return metadata


def build(declaration: PipelineDeclaration) -> dg.AssetsDefinition:
    model, monitoring = declaration.model, declaration.monitoring
    metric = model.live_metric(monitoring)
    bar, size = monitoring.max_degradation, monitoring.window_partitions
    window = window_mapping(size)
    batch_score = (
        score_field(model.task, declaration.serving.prediction)
        if model.task == "binary_classification"
        else f"predicted_{declaration.serving.prediction}"
    )
    key = asset_key(declaration, "live_performance")
    blocking = monitoring.degradation_check == "blocking"
    keys = partitions_definition(declaration.partitions).get_partition_keys()

    @dg.asset(
        key=key,
        description=(
            f"The {declaration.name} model's predictions (served and batch) beside the actual "
            f"{model.target} as it lands: coverage and live {metric} per version and partition."
        ),
        kinds={"pandas", "parquet"},
        ins={
            "outcomes": dg.AssetIn(
                asset_key(declaration, model.features_asset),
                partition_mapping=window,
                metadata=MAY_BE_MISSING,
            ),
            "batch": dg.AssetIn(
                asset_key(declaration, "batch_predictions"),
                partition_mapping=window,
                metadata=MAY_BE_MISSING,
            ),
            "served": dg.AssetIn(
                asset_key(declaration, "served_predictions"),
                partition_mapping=window,
                metadata=MAY_BE_MISSING,
            ),
        },
        check_specs=[
            partition_check(
                declaration,
                "live_performance",
                LIVE_PERFORMANCE_CHECK,
                f"The champion's live {metric} over {size} partitions is at most {bar:.0%} "
                f"worse than its test {metric}" + ("." if blocking else " (warns)."),
                blocking=blocking,
            )
        ],
        # served predictions exist only where the service logged some
        automation_condition=refresh_stale_partitions(
            [asset_key(declaration, "served_predictions")]
        ),
        metadata={"dagster/column_schema": SCHEMA},
        **partitioned(declaration),
        **common(declaration),
    )
    def live_performance(
        context: dg.AssetExecutionContext,
        mlflow: MlflowTracking,
        outcomes: Mapping[str, pd.DataFrame],
        batch: Mapping[str, pd.DataFrame],
        served: Mapping[str, pd.DataFrame],
    ) -> Iterator:
        from ml_assets.deployment import registry

        mlflow.use()
        champion = registry.alias_version(model.registered_model_name, registry.CHAMPION)
        versions = VersionFigures(model.registered_model_name)

        nothing_landed = pd.DataFrame({model.id_column: [], model.target: []})

        @lru_cache(maxsize=size + 1)  # the window slides: memory does not grow with the range
        def joined(partition: str) -> pd.DataFrame:
            landed = outcomes.get(partition, nothing_landed)
            return scored_outcomes(
                partition, landed, model.id_column, model.target,
                batch.get(partition), batch_score, served.get(partition),
            )  # fmt: skip

        frames, checks = {}, {}
        tests = versions.figures(champion)[0] if champion else {}
        for partition in context.partition_keys:
            rows = joined(partition)
            frames[partition] = rows
            context.add_asset_metadata(
                _partition_metadata(model.task, rows, tests), partition_key=partition
            )
            pooled = pd.concat([joined(k) for k in window_keys(keys, partition, size)])
            checks[partition] = _check(model.task, metric, pooled, champion, versions, monitoring)
        yield dg.Output(frames)
        yield from report_per_partition(context, key, LIVE_PERFORMANCE_CHECK, checks)

    return live_performance


def _check(
    task: str,
    metric: str,
    pooled: pd.DataFrame,
    champion: str | None,
    versions: VersionFigures,
    monitoring: Any,
) -> CheckOutcome:
    severity = (
        dg.AssetCheckSeverity.ERROR
        if monitoring.degradation_check == "blocking"
        else dg.AssetCheckSeverity.WARN
    )
    if champion is None:
        return CheckOutcome(True, "undecided: no champion", {"decided": False}, severity)
    tests, trained_through = versions.figures(champion)
    live = live_predictions(pooled, champion, trained_through)
    known = live[live["outcome"].notna()]
    metadata: dict[str, Any] = {
        "champion": champion,
        "outcomes": len(known),
        "served_outcomes": int((known["source"] == SERVED).sum()),
        "trained_through": str(trained_through),
        "bar": monitoring.max_degradation,
    }
    if len(known) < monitoring.min_outcomes or metric not in tests:
        why = (
            f"{len(known)} outcomes of v{champion} out of sample, fewer than "
            f"{monitoring.min_outcomes}"
            if metric in tests
            else f"v{champion} has no test {metric}"
        )
        return CheckOutcome(True, f"undecided: {why}", {**metadata, "decided": False}, severity)
    value = metric_values(task, known["outcome"].to_numpy(), known["score"].to_numpy())[metric]
    if value is None:
        return CheckOutcome(
            True, f"undecided: {metric} cannot be computed", {**metadata, "decided": False},
            severity,
        )  # fmt: skip
    verdict = degradation(task, metric, value, tests[metric], monitoring.max_degradation)
    text = (
        f"live {metric} {value:.4g} over {len(known)} outcomes vs test {tests[metric]:.4g}: "
        f"{verdict.change:+.1%}"
    )
    return CheckOutcome(
        not verdict.degraded,
        f"{'degraded' if verdict.degraded else 'holds'}: {text}",
        {**metadata, "decided": True, f"live_{metric}": value, f"test_{metric}": tests[metric],
         "change": float(np.round(verdict.change, 6))},
        severity,
    )  # fmt: skip
