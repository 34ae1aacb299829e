"""ONNX export of a fitted pipeline, kept only when it scores what the pipeline scores.

ONNX Runtime scores one row in tens of microseconds where scikit-learn spends milliseconds, and
the file runs without Python (edge devices). Its inputs and outputs are the registered model's
format (``ml_assets.contract.model_format``); numeric columns are float32 tensors (the tree
models compare in float32 anyway).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_assets.contract.model_format import Features, onnx_scores, scores
from ml_assets.contract.tasks import Task

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
