"""Test-set evaluation of a model against the naive baseline and the registry's champion."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ml_assets.modeling.plots import markdown_image, new_figure, save_figure

IMPORTANCE_ROWS = 3000


@dataclass
class Evaluation:
    metrics: dict[str, dict[str, float]]
    table: str
    champion_version: str | None = None
    plots: dict[str, dg.MetadataValue] = field(default_factory=dict)


def regression_metrics(actual: pd.Series, predicted: Any) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "mae": float(mean_absolute_error(actual, predicted)),
        "rmse": float(mean_squared_error(actual, predicted) ** 0.5),
        "r2": float(r2_score(actual, predicted)),
    }


def load_champion(model_name: str):
    """(version, model) of the registry's champion, or (None, None) when there is none yet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.tracking.MlflowClient()
    try:
        version = client.get_model_version_by_alias(model_name, "champion")
    except MlflowException:
        return None, None
    return str(version.version), mlflow.sklearn.load_model(f"models:/{model_name}@champion")


def evaluate(spec, trained_model: dict, test: pd.DataFrame, fallback: float, model_name: str,
             scratch: Path) -> Evaluation:  # fmt: skip
    """Metrics and plots of the trained model on ``test``; logged to the model's MLflow run."""
    import mlflow
    from sklearn.inspection import permutation_importance

    X, y = test[spec.columns], test[spec.target]
    model = mlflow.sklearn.load_model(trained_model["model_uri"])
    predicted = model.predict(X)
    metrics = {
        "model": regression_metrics(y, predicted),
        "baseline": regression_metrics(y, test[spec.baseline_column].fillna(fallback)),
    }
    champion_version, champion = load_champion(model_name)
    if champion is not None:
        metrics["champion"] = regression_metrics(y, champion.predict(X))
    table = pd.DataFrame(metrics).T.rename_axis("predictor").round(3).to_markdown()

    plots = {}
    with mlflow.start_run(run_id=trained_model["run_id"], nested=True):
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics["model"].items()})
        mlflow.log_metrics({f"baseline_test_{k}": v for k, v in metrics["baseline"].items()})

        figure, axes = new_figure(5, 5)
        axes.scatter(y, predicted, s=3, alpha=0.3)
        low, high = float(min(y.min(), predicted.min())), float(max(y.max(), predicted.max()))
        axes.plot([low, high], [low, high], color="grey", linewidth=1)
        axes.set(xlabel=f"actual {spec.target}", ylabel="predicted", title="Predicted vs actual")
        plots["plot/predicted_vs_actual"] = _log(figure, scratch, "predicted_vs_actual")

        errors = (pd.Series(predicted, index=y.index) - y).abs().groupby(test[spec.error_by]).mean()
        figure, axes = new_figure()
        errors.plot.bar(ax=axes)
        axes.set(xlabel=spec.error_by, ylabel="MAE (minutes)", title=f"Error by {spec.error_by}")
        plots["plot/error_by"] = _log(figure, scratch, "error_by")

        sample = test.sample(n=min(len(test), IMPORTANCE_ROWS), random_state=0)
        importance = permutation_importance(
            model, sample[spec.columns], sample[spec.target], n_repeats=3, random_state=0,
            scoring="neg_mean_absolute_error",
        )  # fmt: skip
        ranked = pd.Series(importance.importances_mean, index=spec.columns).sort_values()
        figure, axes = new_figure(6, 8)
        ranked.tail(20).plot.barh(ax=axes)
        axes.set(xlabel="MAE increase when shuffled (minutes)", title="Feature importances")
        plots["plot/feature_importances"] = _log(figure, scratch, "feature_importances")
    return Evaluation(metrics, table, champion_version, plots)


def _log(figure, scratch: Path, title: str) -> dg.MetadataValue:
    import mlflow

    path = save_figure(figure, scratch / f"{title}.png")
    mlflow.log_artifact(str(path), "evaluation")
    image = markdown_image(path, title)
    path.unlink()
    return image
