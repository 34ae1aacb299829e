"""The format of a registered model, shared by the model layer that writes it and the
prediction services that read it: where its MLflow run and registry version keep what the
service reads, the columns it reads, the types its skops file may hold, and what its scores
mean (a regressor's predictions, a binary classifier's probabilities of the positive class 1),
from scikit-learn or from its ONNX export.

The ONNX export reads categorical columns as string tensors (missing as ``""``, which the
ordinal encoders treat as unknown, as they treat missing) and numeric columns as float32
tensors; a regressor's outputs its predictions, a classifier's its labels, then its class
probabilities as an ``(n, 2)`` float tensor.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.tasks import Task

ONNX_DIR, ONNX_FILE = "onnx", "model.onnx"
ONNX_ARTIFACT = f"{ONNX_DIR}/{ONNX_FILE}"
"""The trained model's ONNX export in its run, when there is one."""
ONNX_TAG = "onnx_export"
"""Run tag: why the export was kept or not."""
FORECASTER_TAG = "forecaster"
"""Run tag of a statistical forecaster: the model its automatic search chose."""
THRESHOLD_TAG = "decision_threshold"
"""Registry tag of a classifier's decision threshold (chosen on validation)."""

_TREES = ("sklearn.tree._tree.Tree",)
_HIST_TREES = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)
_DTYPE = ("numpy.dtype",)
FORECAST_TYPES = ("ml_assets.modeling.forecasters.StatisticalForecaster",)
"""The types a saved forecaster holds outside skops' default allow-list (reviewed: the class
holds only strings, numbers and float arrays)."""
SKOPS_TRUSTED_TYPES: dict[tuple[Task, str], tuple[str, ...]] = {
    ("regression", "hist_gradient_boosting"): _HIST_TREES,
    ("regression", "random_forest"): (*_DTYPE, *_TREES),
    ("regression", "ridge"): _DTYPE,
    ("binary_classification", "hist_gradient_boosting"): _HIST_TREES,
    ("binary_classification", "random_forest"): (*_DTYPE, *_TREES),
    ("binary_classification", "logistic_regression"): _DTYPE,
    ("regression", "auto_ets"): FORECAST_TYPES,
    ("regression", "auto_arima"): FORECAST_TYPES,
}
"""Every (task, family) pipeline the model layer builds, with the types outside skops' default
allow-list its saved file contains, as reviewed: scikit-learn's fitted tree structures and numpy
dtypes (of the imputers). A saved model needing anything else is refused, never unpickled."""


@dataclass(frozen=True)
class Features:
    """The columns a model reads."""

    categorical: Sequence[str]
    numeric: Sequence[str]
    time: str | None = None
    """The column dating each row, read by statistical families only (None: none declared)."""
    horizon_days: int | None = None
    """How far past its training data a statistical family forecasts (the declared horizon)."""

    @property
    def columns(self) -> list[str]:
        """What a model is given: the features, then the time column if any."""
        return [*self.categorical, *self.numeric, *([self.time] if self.time else [])]


def model_inputs(declaration: PipelineDeclaration) -> Features:
    """What the model of ``declaration`` reads."""
    model = declaration.model
    return Features(
        categorical=model.categorical,
        numeric=model.numeric,
        time=model.time_column,
        horizon_days=declaration.horizon_days,
    )


def scores(pipeline, X, task: Task) -> np.ndarray:
    """A fitted pipeline's scores of rows ``X``: the predictions (regression) or the probability
    of the positive class 1 (binary classification)."""
    if task == "regression":
        return np.asarray(pipeline.predict(X), dtype="float64")
    if task != "binary_classification":
        raise ValueError(f"unknown task {task!r}")
    classes = list(pipeline.classes_)
    if 1 not in classes:
        raise ValueError(f"the classifier has no positive class 1 (classes: {classes})")
    return np.asarray(pipeline.predict_proba(X)[:, classes.index(1)], dtype="float64")


def onnx_inputs(columns: Mapping[str, Sequence], features: Features) -> dict[str, np.ndarray]:
    """The ONNX model's input tensors (one ``(n, 1)`` array per column) from columns of values."""
    inputs = {}
    for name in features.categorical:
        values = np.array(columns[name], dtype=object)  # a copy: the caller's stays as it was
        values[pd.isna(values)] = ""  # a missing category is the empty string, as in training
        inputs[name] = values.astype(str).reshape(-1, 1)
    for name in features.numeric:
        inputs[name] = np.asarray(columns[name], dtype=np.float32).reshape(-1, 1)
    return inputs


def onnx_scores(
    session, columns: Mapping[str, Sequence], features: Features, task: Task
) -> np.ndarray:
    """An ONNX Runtime session's scores of ``columns``: the predictions (regression) or the
    probability of the positive class 1 (binary classification; class probabilities are the
    second output, classes 0 and 1 in that order)."""
    return onnx_scores_of_inputs(session, onnx_inputs(columns, features), task)


def onnx_scores_of_inputs(session, inputs: Mapping[str, np.ndarray], task: Task) -> np.ndarray:
    """``onnx_scores`` of input tensors already built (``onnx_inputs``)."""
    outputs = session.run(None, inputs)
    if task == "regression":
        return np.asarray(outputs[0], dtype="float64").ravel()
    return np.asarray(outputs[1][:, 1], dtype="float64")
