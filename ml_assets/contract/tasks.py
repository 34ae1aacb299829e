"""Model tasks and the metrics each is measured with."""

from typing import Literal

Task = Literal["regression", "binary_classification"]

METRICS: dict[str, dict[str, str]] = {
    "regression": {"mae": "minimize", "rmse": "minimize", "smape": "minimize", "r2": "maximize"},
    "binary_classification": {
        "log_loss": "minimize",
        "brier": "minimize",
        "roc_auc": "maximize",
        "pr_auc": "maximize",
        "accuracy": "maximize",
        "f1": "maximize",
    },
}
"""Each task's test metrics and whether lower or higher is better."""

THRESHOLD_METRICS = ("accuracy", "f1")
"""Classification metrics of decisions at a threshold; all others are of the raw scores."""

DEFAULT_OBJECTIVE: dict[str, str] = {"regression": "mae", "binary_classification": "log_loss"}

OBJECTIVES: dict[str, tuple[str, ...]] = {
    "regression": ("mae", "rmse"),
    "binary_classification": ("log_loss", "brier", "roc_auc"),
}
"""Metrics a study can optimise: those computed from raw predictions, without a threshold."""


def higher_is_better(task: str, metric: str) -> bool:
    return METRICS[task][metric] == "maximize"


LIVE_METRICS: dict[str, tuple[str, ...]] = {
    "regression": ("mae", "rmse"),
    "binary_classification": ("roc_auc", "log_loss", "brier"),
}
"""What live performance measures once outcomes land (and may judge a model on)."""
