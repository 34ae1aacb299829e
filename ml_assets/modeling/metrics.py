"""The metrics a model is tuned, evaluated and gated on, and the classifier's decision threshold.

A regressor's scores are its predictions; a binary classifier's are probabilities of the
positive class 1, turned into decisions by a threshold (positive when ``score >= threshold``).
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ml_assets.contract.tasks import METRICS, THRESHOLD_METRICS, Task, higher_is_better

if TYPE_CHECKING:  # the declaration imports Dagster, which study worker processes do not need
    from ml_assets.contract.declaration import Threshold


def metric_value(metric: str, y: Sequence, scores: Sequence) -> float:
    """One metric of ``scores`` against the actual ``y`` that needs no threshold."""
    from sklearn import metrics as m

    functions = {
        "mae": m.mean_absolute_error,
        "rmse": m.root_mean_squared_error,
        "r2": m.r2_score,
        "smape": smape,
        "roc_auc": m.roc_auc_score,
        "pr_auc": m.average_precision_score,
        # labels given: a test set of one class still has a log loss and a Brier score
        "log_loss": lambda y, p: m.log_loss(y, p, labels=[0, 1]),
        "brier": lambda y, p: m.brier_score_loss(y, p, labels=[0, 1]),
    }
    if metric not in functions:
        raise ValueError(f"{metric!r} is not a metric of raw scores ({', '.join(functions)})")
    return float(functions[metric](y, scores))


def smape(y: Sequence, predicted: Sequence) -> float:
    """Symmetric mean absolute percentage error, in [0, 2]: the mean of
    ``2 |y - ŷ| / (|y| + |ŷ|)``, a row whose actual and prediction are both 0 counting 0."""
    y, predicted = np.asarray(y, dtype="float64"), np.asarray(predicted, dtype="float64")
    scale = np.abs(y) + np.abs(predicted)
    ratio = np.divide(2 * np.abs(y - predicted), scale, out=np.zeros_like(scale), where=scale > 0)
    return float(ratio.mean()) if len(ratio) else float("nan")


def metrics(
    task: Task, y: Sequence, scores: Sequence, threshold: float | None = None
) -> dict[str, float]:
    """Every metric of ``task`` (``contract.tasks.METRICS``) for ``scores`` against ``y``; the
    classification metrics of decisions (accuracy, F1) only when a ``threshold`` is given."""
    values = {
        name: metric_value(name, y, scores)
        for name in METRICS[task]
        if name not in THRESHOLD_METRICS
    }
    if threshold is not None:
        if task != "binary_classification":
            raise ValueError(f"a threshold applies to binary classification, not {task}")
        from sklearn.metrics import accuracy_score, f1_score

        decided = np.asarray(scores) >= threshold
        values["accuracy"] = float(accuracy_score(y, decided))
        values["f1"] = float(f1_score(y, decided, zero_division=0.0))
    return values


def choose_threshold(y: Sequence, p: Sequence, rule: "Threshold") -> float:
    """The decision threshold ``rule`` picks on validation rows with labels ``y`` and positive
    class probabilities ``p``: the fixed value, or the one with the highest F1 (the lowest of
    equals)."""
    if rule.rule == "fixed":
        return rule.value
    from sklearn.metrics import precision_recall_curve

    if not np.any(np.asarray(y) == 1):
        raise ValueError("no positive rows to choose a max_f1 threshold on")
    precision, recall, thresholds = precision_recall_curve(y, p)
    # the curve's last point (precision 1, recall 0) has no threshold
    precision, recall = precision[:-1], recall[:-1]
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return float(thresholds[np.argmax(f1)])


def is_better(task: Task, metric: str, a: float, b: float) -> bool:
    """Whether ``a`` is strictly better than ``b`` on ``metric``."""
    return a > b if higher_is_better(task, metric) else a < b


def bar(task: Task, metric: str, reference: float, margin: float) -> float:
    """The value of ``metric`` that is better than ``reference`` by ``margin`` (a fraction of
    it, e.g. 0.02); a negative ``margin`` is the slack allowed to be that much worse."""
    step = margin * abs(reference)
    return reference + step if higher_is_better(task, metric) else reference - step
