"""Trip features: what is known about a trip when it ends, before the rider tips or not.

One implementation shared by the ``trip_features`` asset and the prediction service, so a trip
gets the same features in training and in production. There are no lookups: every feature is a
function of the trip's own request-level columns.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

REQUEST_COLUMNS = ("trip_id", "distance", "company", "local", "dow", "hour")
"""What a caller knows about a trip: the inputs of ``feature_columns``."""
ID_COLUMN = "trip_id"
CATEGORICAL_FEATURES = ("company", "dow")
NUMERIC_FEATURES = ("distance", "hour", "local")
TARGET = "tip"
"""1 if the rider tipped; only in the asset's frame, never in a request."""
FEATURE_COLUMNS = (ID_COLUMN, *CATEGORICAL_FEATURES, *NUMERIC_FEATURES)


def feature_columns(rows: Mapping[str, Sequence]) -> dict[str, np.ndarray]:
    """Feature columns of trips given as ``REQUEST_COLUMNS`` (a frame or a dict of sequences):
    the id and categoricals as objects, the numeric features as float64 (``local`` as 0/1)."""
    out: dict[str, np.ndarray] = {
        column: np.asarray(rows[column], dtype=object)
        for column in (ID_COLUMN, *CATEGORICAL_FEATURES)
    }
    out["distance"] = np.asarray(rows["distance"], dtype=np.float64)
    out["hour"] = np.asarray(rows["hour"], dtype=np.float64)
    out["local"] = np.asarray(rows["local"], dtype=bool).astype(np.float64)
    for column in NUMERIC_FEATURES:
        # Rounded to float32 precision (kept as float64): tree models and their ONNX exports
        # then compare exactly the same numbers, so both predict the same.
        out[column] = out[column].astype(np.float32).astype(np.float64)
    return {column: out[column] for column in FEATURE_COLUMNS}


def feature_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The ``trip_features`` rows of clean trips (``rows``), in order, with the ``tip``
    target."""
    frame = pd.DataFrame(feature_columns(rows))
    frame = frame.astype({column: "string" for column in (ID_COLUMN, *CATEGORICAL_FEATURES)})
    frame[TARGET] = rows[TARGET].to_numpy(dtype=bool).astype(np.int64)
    return frame
