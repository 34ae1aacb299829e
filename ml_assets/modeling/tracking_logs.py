"""What the model assets record in MLflow: studies with trial child runs, models, versions."""

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ml_assets.contract.model_format import (
    FORECASTER_TAG,
    ONNX_DIR,
    ONNX_FILE,
    ONNX_TAG,
    SKOPS_TRUSTED_TYPES,
)
from ml_assets.modeling.estimators import STATISTICAL, build_pipeline
from ml_assets.modeling.onnx_export import Exported, export_onnx
from ml_assets.modeling.plots import markdown_image, save_figure
from ml_assets.modeling.trials import best_configuration


@dataclass
class LoggedStudy:
    run_id: str
    completed: int
    pruned: int
    plots: dict[str, dg.MetadataValue] = field(default_factory=dict)


def _trial_status(state) -> str:
    import optuna

    return {
        optuna.trial.TrialState.COMPLETE: "FINISHED",
        optuna.trial.TrialState.PRUNED: "KILLED",
    }.get(state, "FAILED")


def log_study(study, numbers: list[int], metric: str, scratch: Path) -> LoggedStudy:
    """A nested study run with the best parameters and Optuna plots, one child run per trial."""
    import mlflow
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    with mlflow.start_run(run_name="hyperparameter_study", nested=True) as run:
        mlflow.set_tags({"optuna.study": study.study_name})
        mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
        mlflow.log_metric(f"best_validation_{metric}", study.best_value)
        client = mlflow.tracking.MlflowClient()
        trials = [t for t in study.trials if t.number in set(numbers)]
        for trial in trials:
            child = client.create_run(
                run.info.experiment_id,
                start_time=int(trial.datetime_start.timestamp() * 1000),
                tags={
                    "mlflow.parentRunId": run.info.run_id,
                    "mlflow.runName": f"trial-{trial.number}",
                    "optuna.trial": str(trial.number),
                    "optuna.state": trial.state.name,
                },
            )
            metrics = [
                mlflow.entities.Metric(f"validation_{metric}", value, 0, step)
                for step, value in sorted(trial.intermediate_values.items())
            ]
            if trial.value is not None:
                metrics.append(mlflow.entities.Metric("objective", trial.value, 0, 0))
            client.log_batch(
                child.info.run_id,
                metrics=metrics,
                params=[mlflow.entities.Param(k, str(v)) for k, v in trial.params.items()],
            )
            end = trial.datetime_complete or trial.datetime_start
            client.set_terminated(
                child.info.run_id, _trial_status(trial.state), int(end.timestamp() * 1000)
            )
        plots = {}
        for title, draw in (
            ("optimization_history", optuna_plots.plot_optimization_history),
            ("param_importances", optuna_plots.plot_param_importances),
        ):
            try:
                axes = draw(study)
            except (ValueError, RuntimeError) as error:  # e.g. too few completed trials
                plots[f"plot/{title}"] = dg.MetadataValue.text(f"not available: {error}")
                continue
            path = save_figure(axes.figure, scratch / f"{run.info.run_id}-{title}.png")
            mlflow.log_artifact(str(path), "plots")
            plots[f"plot/{title}"] = markdown_image(path, title)
            path.unlink()
    states = [t.state for t in trials]
    return LoggedStudy(
        run_id=run.info.run_id,
        completed=states.count(optuna.trial.TrialState.COMPLETE),
        pruned=states.count(optuna.trial.TrialState.PRUNED),
        plots=plots,
    )


def log_fitted_model(
    layer, best_params: Mapping[str, Any], training_set: pd.DataFrame, split_column: str
) -> dict:
    """Refit the best configuration on train + validation and log it (skops, signature, input
    example, ONNX export when it predicts the same). A classifier's decision threshold is
    chosen first, by the declared rule, on validation scores of the same configuration fitted
    on train alone."""
    import mlflow
    import skops.io
    from mlflow.models import infer_signature

    from ml_assets.contract.model_format import scores
    from ml_assets.modeling.metrics import choose_threshold

    model = layer.model
    family, params = best_configuration(best_params)
    rows = training_set[training_set[split_column] != "test"]
    threshold = None
    if model.task == "binary_classification":
        train = training_set[training_set[split_column] == "train"]
        valid = training_set[training_set[split_column] == "validation"]
        on_train = build_pipeline(family, params, layer.features, model.task)
        on_train.fit(train[layer.features.columns], train[model.target])
        validation_scores = scores(on_train, valid[layer.features.columns], model.task)
        threshold = choose_threshold(valid[model.target], validation_scores, model.threshold)
    pipeline = build_pipeline(family, params, layer.features, model.task)
    X, y = rows[layer.features.columns], rows[model.target]
    pipeline.fit(X, y)
    needed = sorted(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))
    unreviewed = set(needed) - set(SKOPS_TRUSTED_TYPES[model.task, family])
    if unreviewed:
        raise dg.Failure(
            f"The fitted {family} pipeline contains types nobody reviewed for skops loading: "
            f"{sorted(unreviewed)}. Review them and add them to SKOPS_TRUSTED_TYPES."
        )
    example = X.head(5)
    check_rows = X.sample(n=min(len(X), 2000), random_state=0)
    exported = (
        Exported(None, None, "no ONNX converter for a statistical forecaster: served as saved")
        if family in STATISTICAL
        else export_onnx(pipeline, layer.features, check_rows, model.task)
    )
    described = getattr(pipeline, "description_", None)  # a forecaster's chosen model
    with mlflow.start_run(run_name="trained_model", nested=True) as run:
        mlflow.log_params({"family": family, **params})
        if described:
            mlflow.set_tag(FORECASTER_TAG, described)
        mlflow.log_metric("trained_rows", len(rows))
        if threshold is not None:
            mlflow.log_metric("decision_threshold", threshold)
        mlflow.set_tag(ONNX_TAG, exported.reason)
        if exported.model is not None:
            mlflow.log_metric("onnx_max_abs_error", exported.max_abs_error)
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / ONNX_FILE
                path.write_bytes(exported.model)
                mlflow.log_artifact(str(path), ONNX_DIR)
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(example, scores(pipeline, example, model.task)),
            input_example=example,
            serialization_format="skops",
            skops_trusted_types=needed,
            pip_requirements=model_requirements(),
        )
    return {
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "family": family,
        "params": params,
        "trained_rows": len(rows),
        "skops_trusted_types": needed,
        "threshold": threshold,
        "onnx": exported.reason if exported.model is not None else f"none: {exported.reason}",
        **({"forecaster": described} if described else {}),
    }


REQUIREMENTS = ("scikit-learn", "skops", "numpy", "scipy", "pandas")
"""What a saved pipeline needs to load and score, pinned to the versions that trained it."""


def model_requirements() -> list[str]:
    """The model's pip requirements, stated rather than inferred (MLflow's inference imports
    the model in a subprocess: 10-13 s of every training)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in REQUIREMENTS]


def register(name: str, model_uri: str, tags: Mapping[str, str], alias: str) -> str:
    """Register ``model_uri`` as a new version of ``name`` with ``tags``; point ``alias`` at it."""
    import mlflow

    version = mlflow.register_model(model_uri, name, tags=dict(tags))
    mlflow.tracking.MlflowClient().set_registered_model_alias(name, alias, version.version)
    return str(version.version)
