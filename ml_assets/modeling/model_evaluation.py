"""``model_evaluation``: test metrics of the model, the baseline and the champion, with the two
blocking checks that gate registration."""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_assets.automation import follow_upstream
from ml_assets.contract.dagster_terms import declared_section
from ml_assets.contract.declaration import Acceptance
from ml_assets.modeling.layer import (
    BEATS_BASELINE,
    NOT_WORSE_THAN_CHAMPION,
    ModelLayer,
)
from ml_assets.modeling.metrics import bar as metric_bar
from ml_assets.modeling.metrics import is_better
from resources.mlflow_tracking import MlflowTracking


def build(layer: ModelLayer) -> dg.AssetsDefinition:
    model = layer.model
    metric = model.gate_metric
    AcceptanceConfig = layer.acceptance_config
    key = layer.key("model_evaluation")

    @dg.asset(
        key=key,
        description=(
            f"Test metrics ({model.task}) of the model, the naive baseline "
            f"({model.baseline.column or 'the training prior'}) and the current champion, with "
            "plots; blocking checks gate registration."
        ),
        kinds={"scikitlearn", "mlflow"},
        ins={
            "training_set": dg.AssetIn(layer.key("training_set")),
            "trained_model": dg.AssetIn(layer.key("trained_model")),
        },
        io_manager_key="json_io_manager",
        check_specs=[
            dg.AssetCheckSpec(
                BEATS_BASELINE,
                asset=key,
                blocking=True,
                description=f"Test {metric} beats the naive baseline by the declared margin.",
            ),
            dg.AssetCheckSpec(
                NOT_WORSE_THAN_CHAMPION,
                asset=key,
                blocking=True,
                description=f"Test {metric} is not worse than the champion's (passes with none).",
            ),
        ],
        automation_condition=follow_upstream(),
        **layer.common(),
    )
    def model_evaluation(
        context: dg.AssetExecutionContext,
        config: AcceptanceConfig,
        mlflow: MlflowTracking,
        training_set: pd.DataFrame,
        trained_model: dict,
    ) -> Iterator:
        from ml_assets.modeling.evaluation import evaluate

        acceptance = declared_section(config, Acceptance)
        with (
            tempfile.TemporaryDirectory(prefix="ml-assets-evaluation-") as plots,
            mlflow.dagster_run(context, model.experiment),
        ):
            result = evaluate(layer, trained_model, training_set, Path(plots))
        scores = {name: values[metric] for name, values in result.metrics.items()}
        yield dg.Output(
            {
                "metrics": result.metrics,
                "model_uri": trained_model["model_uri"],
                "gate_metric": metric,
                "champion_version": result.champion_version,
            },
            metadata={
                "metrics": dg.MetadataValue.md(result.table),
                f"test_{metric}": scores["model"],
                **result.plots,
            },
        )
        bar = metric_bar(
            model.task, metric, scores["baseline"], acceptance.min_improvement_over_baseline
        )
        yield dg.AssetCheckResult(
            check_name=BEATS_BASELINE,
            passed=not is_better(model.task, metric, bar, scores["model"]),
            description=(
                f"model {metric} {scores['model']:.4g} vs bar {bar:.4g} (baseline "
                f"{scores['baseline']:.4g}; {acceptance.min_improvement_over_baseline:.1%} better "
                "required)"
            ),
            metadata={
                f"model_{metric}": scores["model"],
                f"baseline_{metric}": scores["baseline"],
                "bar": bar,
            },
        )
        if "champion" not in scores:
            yield dg.AssetCheckResult(
                check_name=NOT_WORSE_THAN_CHAMPION, passed=True, description="no champion yet"
            )
            return
        limit = metric_bar(
            model.task, metric, scores["champion"], -acceptance.max_regression_vs_champion
        )
        yield dg.AssetCheckResult(
            check_name=NOT_WORSE_THAN_CHAMPION,
            passed=not is_better(model.task, metric, limit, scores["model"]),
            description=f"model {metric} {scores['model']:.4g} vs champion "
            f"{scores['champion']:.4g} (limit {limit:.4g})",
            metadata={
                f"model_{metric}": scores["model"],
                f"champion_{metric}": scores["champion"],
                "limit": limit,
                "champion_version": result.champion_version,
            },
        )

    return model_evaluation
