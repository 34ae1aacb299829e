"""Models loaded from the MLflow registry, ready to score feature columns: a regressor's
predictions, a binary classifier's probabilities of the positive class 1.

A version's ONNX export (logged beside it by ``trained_model`` when it predicts the same) runs
on ONNX Runtime; without one, the scikit-learn pipeline is loaded from its skops file with
only the reviewed types trusted (never the list the model's own files declare), so a model
that needs anything else is refused, not unpickled.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ml_assets.contract.model_format import (
    ONNX_ARTIFACT,
    ONNX_DIR,
    SKOPS_TRUSTED_TYPES,
    THRESHOLD_TAG,
    Features,
    onnx_inputs,
    onnx_scores_of_inputs,
    scores,
)
from ml_assets.contract.tasks import Task

REVIEWED_TYPES = sorted({t for types in SKOPS_TRUSTED_TYPES.values() for t in types})


class Predictor(Protocol):
    kind: str

    def inputs(self, columns: Mapping[str, np.ndarray]) -> Any:
        """What the model reads, built from feature columns; predictors of the same ``kind``
        and features read the same inputs, so a champion and a challenger share them."""
        ...

    def predict_inputs(self, inputs: Any) -> np.ndarray:
        """The model's scores of the rows: predictions or positive-class probabilities."""
        ...

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray: ...


@dataclass
class OnnxPredictor:
    session: object
    features: Features
    task: Task
    kind: str = "onnx"

    def inputs(self, columns: Mapping[str, np.ndarray]) -> Any:
        return onnx_inputs(columns, self.features)

    def predict_inputs(self, inputs: Any) -> np.ndarray:
        return onnx_scores_of_inputs(self.session, inputs, self.task)

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.predict_inputs(self.inputs(columns))


@dataclass
class SklearnPredictor:
    pipeline: object
    features: Features
    task: Task
    kind: str = "sklearn"

    def inputs(self, columns: Mapping[str, np.ndarray]) -> Any:
        import pandas as pd

        return pd.DataFrame({n: columns[n] for n in self.features.columns})

    def predict_inputs(self, inputs: Any) -> np.ndarray:
        return scores(self.pipeline, inputs, self.task)

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.predict_inputs(self.inputs(columns))


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    run_id: str
    trained_on: str | None
    predictor: Predictor
    tags: Mapping[str, str] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.time)

    @property
    def threshold(self) -> float:
        """A classifier's decision threshold, chosen on validation (0.5 if none was tagged)."""
        return float(self.tags.get(THRESHOLD_TAG, 0.5))


class NoChampion(LookupError):
    """The registered model has no version under the alias."""


def resolve_alias(name: str, alias: str) -> str:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        raise NoChampion(f"{name} has no version aliased {alias!r}") from error


def load_version(
    name: str, version: str, features: Features, task: Task, prefer_onnx: bool = True
) -> LoadedModel:
    """Version ``version`` of ``name``, a model of ``task``, on ONNX Runtime when it has a
    verified export."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    registered = client.get_model_version(name, version)
    predictor = None
    if prefer_onnx and ONNX_ARTIFACT in _run_artifacts(client, registered.run_id):
        predictor = _onnx(client, registered.run_id, features, task)
    if predictor is None:
        predictor = SklearnPredictor(_skops_pipeline(name, version), features, task)
    return LoadedModel(
        name=name,
        version=str(version),
        run_id=registered.run_id,
        trained_on=registered.tags.get("feature_partitions"),
        predictor=predictor,
        tags=dict(registered.tags),
    )


def _run_artifacts(client, run_id: str) -> set[str]:
    return {info.path for info in client.list_artifacts(run_id, ONNX_DIR)}


def _onnx(client, run_id: str, features: Features, task: Task) -> OnnxPredictor:
    import onnxruntime

    path = client.download_artifacts(run_id, ONNX_ARTIFACT)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one row at a time: threads cost more than they give
    session = onnxruntime.InferenceSession(
        path, sess_options=options, providers=["CPUExecutionProvider"]
    )
    return OnnxPredictor(session, features, task)


def _skops_pipeline(name: str, version: str):
    import mlflow
    import skops.io
    import yaml

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["sklearn"]
    if flavor.get("serialization_format") != "skops":
        raise ValueError(f"{name} v{version} is not saved with skops; refusing to unpickle it")
    return skops.io.load(local / flavor["pickled_model"], trusted=REVIEWED_TYPES)
