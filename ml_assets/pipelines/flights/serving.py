"""How the prediction service computes a flight's features from its request.

A request carries what a scheduler knows before departure (the fields declared in
``pipeline.yaml``). Its features come from the same ``FeatureLookups`` the ``flight_features``
asset uses, over the latest ``online_features`` snapshot. Lookups that miss (an unknown plane,
route or carrier, no weather for the hour) give the documented defaults: missing values, which
the model was trained with, and 0 recent flights; they never fail a request. A snapshot holds
one day's weather and statistics, so the declaration names ``date`` as the request field the
snapshot must cover: the service warns about (or refuses) an item of another day.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.contract.pipeline import ServingHooks
from ml_assets.pipelines.flights.features import FeatureLookups

REQUEST_COLUMNS = ("sched_dep_time", "sched_arr_time", "carrier", "flight", "tailnum", "origin",
                   "dest", "distance")  # fmt: skip
"""Request fields that are clean-flight columns as they are (``date`` is year/month/day)."""


def schedule_columns(items: Sequence[Any]) -> dict[str, list]:
    """Requests as the ``SCHEDULE_COLUMNS`` the feature code takes."""
    return {
        "year": [i.date.year for i in items],
        "month": [i.date.month for i in items],
        "day": [i.date.day for i in items],
        **{column: [getattr(i, column) for i in items] for column in REQUEST_COLUMNS},
    }


def request_items(flights: pd.DataFrame) -> list[dict]:
    """What a caller would send for each of ``flights`` (clean flights), in order."""
    columns = list(REQUEST_COLUMNS)
    frame = flights.loc[:, columns].astype(object).where(flights[columns].notna(), None)
    dates = pd.to_datetime(flights[["year", "month", "day"]]).dt.strftime("%Y-%m-%d")
    return [
        {"date": day, **{k: _plain(v) for k, v in row.items()}}
        for day, row in zip(dates, frame.to_dict("records"), strict=True)
    ]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def feature_columns(lookups: FeatureLookups, items: Sequence[Any]) -> Mapping[str, np.ndarray]:
    return lookups.columns(schedule_columns(items))


def _lookups(tables: Mapping[str, pd.DataFrame]) -> FeatureLookups:
    return FeatureLookups(**tables)


HOOKS = ServingHooks(columns=feature_columns, request_items=request_items, lookups=_lookups)
