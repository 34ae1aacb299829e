"""What the service needs to know about the model it serves."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ml_assets.modeling.estimators import Features


@dataclass(frozen=True)
class ServedModel:
    registered_model: str
    """The MLflow registered model; the service serves its ``champion`` alias."""
    request: type[BaseModel]
    """One item of ``POST /predict``: the fields a caller knows."""
    features: Features
    """The model's input columns."""
    snapshot_asset: Sequence[str]
    """Asset key path of the online feature snapshot the service looks items up in."""
    lookups: Callable[[Mapping[str, pd.DataFrame]], Any]
    """Index a snapshot's tables for lookup (done once per reload)."""
    columns: Callable[[Any, Sequence[BaseModel]], Mapping[str, np.ndarray]]
    """Feature columns of request items, computed with the pipeline's feature code."""
    id_column: str
    """A feature column that identifies an item in the response."""
    prediction: str
    """Name of the predicted quantity in the response."""
    warm_up: Sequence[Mapping[str, Any]]
    """Request items scored before a model goes live; it must give finite predictions."""
    max_batch: int = 1000
