"""How the prediction service computes a trip's features from its request.

A request carries what is known when the trip ends (the fields declared in ``pipeline.yaml``);
its features come from the same ``feature_columns`` the ``trip_features`` asset uses. Nothing is
looked up, so the service needs no snapshot; a company the model never saw is scored as an
unknown category, never refused.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ml_assets.contract.pipeline import ServingHooks
from ml_assets.pipelines.taxi.features import REQUEST_COLUMNS, feature_columns


def columns(lookups: None, items: Sequence[BaseModel]) -> dict[str, np.ndarray]:
    """Feature columns of validated request ``items``."""
    return feature_columns(
        {column: [getattr(item, column) for item in items] for column in REQUEST_COLUMNS}
    )


def request_items(trips: pd.DataFrame) -> list[dict[str, Any]]:
    """What a caller would send for each of ``trips`` (clean trips), in order."""
    return trips.loc[:, list(REQUEST_COLUMNS)].to_dict("records")


HOOKS = ServingHooks(columns=columns, request_items=request_items, lookups=None)
