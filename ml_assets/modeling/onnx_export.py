"""ONNX export of a fitted pipeline, kept only when it scores what the pipeline scores.

ONNX Runtime scores one row in tens of microseconds where scikit-learn spends milliseconds, and
the file runs without Python (edge devices). Categorical columns become string tensors (missing
as ``""``, which the ordinal encoders treat as unknown, as they treat missing), numeric columns
float32 tensors (the tree models compare in float32 anyway). A regressor's ONNX model outputs
its predictions; a classifier's outputs its labels, then its class probabilities as an
``(n, 2)`` float tensor.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_assets.contract.tasks import Task
from ml_assets.modeling.estimators import Features, scores

OPSET = {"": 18, "ai.onnx.ml": 3}
PARITY_TOLERANCE: dict[Task, float] = {"regression": 0.01, "binary_classification": 1e-4}
"""Largest accepted difference from scikit-learn's score: in target units (regression), in
probability of the positive class (binary classification)."""


@dataclass(frozen=True)
class Exported:
    model: bytes | None
    """The ONNX model, or None when it could not be exported or does not score the same."""
    max_abs_error: float | None
    reason: str


def onnx_inputs(columns: Mapping[str, Sequence], features: Features) -> dict[str, np.ndarray]:
    """The model's input tensors (one ``(n, 1)`` array per column) from columns of values."""
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


def export_onnx(pipeline, features: Features, check_rows: pd.DataFrame, task: Task) -> Exported:
    """``pipeline`` as ONNX, verified against its own scores on ``check_rows``."""
    import onnxruntime
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    types = [(name, StringTensorType([None, 1])) for name in features.categorical] + [
        (name, FloatTensorType([None, 1])) for name in features.numeric
    ]
    # probabilities as a plain (n, 2) tensor, not a sequence of {class: probability} maps
    options = {id(pipeline.steps[-1][1]): {"zipmap": False}} if task != "regression" else None
    try:
        model = to_onnx(
            pipeline, initial_types=types, target_opset=OPSET, options=options
        ).SerializeToString()
        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        scored = onnx_scores(session, check_rows, features, task)
    except Exception as error:  # skl2onnx raises many types for unsupported models
        return Exported(None, None, f"not exportable: {type(error).__name__}: {error}")
    error = float(np.max(np.abs(scored - scores(pipeline, check_rows, task)), initial=0.0))
    if error > PARITY_TOLERANCE[task]:
        return Exported(None, error, f"scores differ by up to {error:.4g}")
    return Exported(model, error, f"max abs error {error:.2g} on {len(check_rows)} rows")
