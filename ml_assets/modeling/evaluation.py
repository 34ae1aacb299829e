"""Test-set evaluation of a model against the naive baseline and the registry's champion."""

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from ml_assets.contract.model_format import THRESHOLD_TAG
from ml_assets.contract.names import CHAMPION
from ml_assets.modeling.layer import SPLIT_COLUMN, ModelLayer
from ml_assets.modeling.plots import markdown_image, new_figure, save_figure

IMPORTANCE_ROWS = 3000
IMPORTANCE_SCORING = {
    "regression": "neg_mean_absolute_error",
    "binary_classification": "neg_log_loss",
}


@dataclass
class Evaluation:
    metrics: dict[str, dict[str, float]]
    table: str
    champion_version: str | None = None
    plots: dict[str, dg.MetadataValue] = field(default_factory=dict)


def load_champion(model_name: str):
    """(version, model, threshold) of the registry's champion; Nones when there is none yet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.tracking.MlflowClient()
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None, None, None
    threshold = version.tags.get(THRESHOLD_TAG)
    model = mlflow.sklearn.load_model(f"models:/{model_name}@{CHAMPION}")
    return str(version.version), model, float(threshold) if threshold else None


def scaled_errors(results: dict[str, dict[str, float]]) -> None:
    """Add each predictor's MASE: its MAE over the baseline's on the same rows (the mean
    absolute scaled error; with a seasonal naive baseline, the forecaster's usual one)."""
    scale = results["baseline"]["mae"]
    for values in results.values():
        values["mase"] = values["mae"] / scale if scale else float("nan")


def baseline_scores(layer: ModelLayer, test: pd.DataFrame, train: pd.DataFrame) -> np.ndarray:
    """The naive prediction for ``test``: the declared column (gaps take the training prior),
    or the training prior (mean target, or positive rate) for every row."""
    target, baseline = layer.model.target, layer.model.baseline
    prior = float(train[target].mean())
    if baseline.kind == "column":
        return test[baseline.column].fillna(prior).to_numpy(dtype="float64")
    return np.full(len(test), prior)


def evaluate(
    layer: ModelLayer, trained_model: dict, training_set: pd.DataFrame, scratch: Path
) -> Evaluation:
    """Metrics and plots of the trained model on the test rows; logged to the model's run."""
    import mlflow

    from ml_assets.contract.model_format import scores
    from ml_assets.modeling.estimators import STATISTICAL
    from ml_assets.modeling.metrics import metrics

    model, task = layer.model, layer.model.task
    test = training_set[training_set[SPLIT_COLUMN] == "test"]
    train = training_set[training_set[SPLIT_COLUMN] == "train"]
    X, y = test[layer.features.columns], test[model.target]
    fitted = mlflow.sklearn.load_model(trained_model["model_uri"])
    threshold = trained_model.get("threshold")
    predicted = scores(fitted, X, task)
    results = {
        "model": metrics(task, y, predicted, threshold),
        "baseline": metrics(task, y, baseline_scores(layer, test, train), threshold),
    }
    prior = float(train[model.target].mean())
    for name, column in model.compare_with.items():
        naive = test[column].fillna(prior).to_numpy(dtype="float64")
        results[name] = metrics(task, y, naive, threshold)
    champion_version, champion, champion_threshold = load_champion(model.registered_model_name)
    if champion is not None:
        results["champion"] = metrics(task, y, scores(champion, X, task), champion_threshold)
    if task == "regression":
        scaled_errors(results)
    table = pd.DataFrame(results).T.rename_axis("predictor").round(4).to_markdown()

    with mlflow.start_run(run_id=trained_model["run_id"], nested=True):
        mlflow.log_metrics({f"test_{k}": v for k, v in results["model"].items()})
        for name in ("baseline", *model.compare_with):
            mlflow.log_metrics({f"{name}_test_{k}": v for k, v in results[name].items()})
        figures = (
            _regression_figures(layer, test, predicted)
            if task == "regression"
            else _classification_figures(y, predicted, threshold)
        )
        if trained_model["family"] not in STATISTICAL:  # a forecaster reads no feature
            figures["feature_importances"] = _importances(layer, fitted, test)
        plots = {f"plot/{title}": _log(figure, scratch, title) for title, figure in figures.items()}
    return Evaluation(results, table, champion_version, plots)


def _regression_figures(layer: ModelLayer, test: pd.DataFrame, predicted: np.ndarray) -> dict:
    model = layer.model
    y = test[model.target]
    figure, axes = new_figure(5, 5)
    axes.scatter(y, predicted, s=3, alpha=0.3)
    low, high = float(min(y.min(), predicted.min())), float(max(y.max(), predicted.max()))
    axes.plot([low, high], [low, high], color="grey", linewidth=1)
    axes.set(xlabel=f"actual {model.target}", ylabel="predicted", title="Predicted vs actual")
    figures = {"predicted_vs_actual": figure}
    if model.error_by:
        errors = (pd.Series(predicted, index=y.index) - y).abs().groupby(test[model.error_by])
        figure, axes = new_figure()
        errors.mean().plot.bar(ax=axes)
        axes.set(xlabel=model.error_by, ylabel="MAE", title=f"Error by {model.error_by}")
        figures["error_by"] = figure
    return figures


def _classification_figures(y: pd.Series, p: np.ndarray, threshold: float | None) -> dict:
    from ml_assets.modeling import plots

    figures = {
        "roc_curve": plots.roc_figure(y, p),
        "precision_recall_curve": plots.precision_recall_figure(y, p),
        "reliability_curve": plots.reliability_figure(y, p),
    }
    if threshold is not None:
        figures["confusion_matrix"] = plots.confusion_figure(y, p, threshold)
    return figures


def _importances(layer: ModelLayer, fitted, test: pd.DataFrame):
    from sklearn.inspection import permutation_importance

    model = layer.model
    sample = test.sample(n=min(len(test), IMPORTANCE_ROWS), random_state=0)
    importance = permutation_importance(
        fitted, sample[model.features], sample[model.target], n_repeats=3, random_state=0,
        scoring=IMPORTANCE_SCORING[model.task],
    )  # fmt: skip
    ranked = pd.Series(importance.importances_mean, index=model.features).sort_values()
    figure, axes = new_figure(6, 8)
    ranked.tail(20).plot.barh(ax=axes)
    axes.set(xlabel=f"{IMPORTANCE_SCORING[model.task]} lost when shuffled",
             title="Feature importances")  # fmt: skip
    return figure


def _log(figure, scratch: Path, title: str) -> dg.MetadataValue:
    import mlflow

    path = save_figure(figure, scratch / f"{title}.png")
    mlflow.log_artifact(str(path), "evaluation")
    image = markdown_image(path, title)
    path.unlink()
    return image
