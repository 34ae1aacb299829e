"""A day's features: its weekday, its weather and games, the declared calendar and history
features (``features:`` in ``pipeline.yaml``, computed by the platform), row by row.

One implementation shared by the ``day_features`` asset and the prediction service: the service
computes the declared history features from its snapshot of recent days, then these columns.
"""

import numpy as np
import pandas as pd

from ml_assets.pipelines import declaration

DECLARED = declaration("ridership")
ID_COLUMN = DECLARED.model.id_column
TARGET = DECLARED.model.target
"""Thousands of riders; only in the asset's frame, never in a request."""
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
NUMERIC = (*DECLARED.features.outputs, "temp", "precip_max", "rain", "snow", "bulls_home",
           "bears_home", "blackhawks_home", "cubs_home")  # fmt: skip
"""Every numeric feature column: the declared time features (with the lags the baselines
use), the day's weather and its games as 0/1."""


def feature_columns(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Feature columns of days (clean rows, or request rows) with their time features."""
    days = pd.to_datetime(rows["date"])
    out: dict[str, np.ndarray] = {
        ID_COLUMN: days.dt.strftime("%Y-%m-%d").to_numpy(dtype=object),
        "weekday": np.asarray(WEEKDAYS, dtype=object)[days.dt.dayofweek.to_numpy()],
    }
    for column in NUMERIC:
        # float32 precision (kept as float64): the ONNX export compares the same numbers
        values = np.asarray(rows[column], dtype=np.float64)
        out[column] = values.astype(np.float32).astype(np.float64)
    return out


def feature_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The ``day_features`` rows of clean days with their time features, with the target."""
    frame = pd.DataFrame(feature_columns(rows)).astype({ID_COLUMN: "string", "weekday": "string"})
    frame[TARGET] = rows[TARGET].to_numpy(dtype=np.float64)
    return frame
