"""What the prediction service serves for flights: request fields and their features.

A request carries what a scheduler knows before departure. Its features come from the same
``FeatureLookups`` the ``flight_features`` asset uses, over the latest ``online_features``
snapshot. Lookups that miss (an unknown plane, route or carrier, no weather for the hour) give
the documented defaults: missing values, which the model was trained with, and 0 recent
flights; they never fail a request.
"""

import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.features import FeatureLookups

_RANGES = config.FLIGHT_RANGES


class FlightRequest(BaseModel):
    """One scheduled flight, as its operator knows it before departure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: dt.date = Field(description="Scheduled local departure date.")
    sched_dep_time: int = Field(
        ge=_RANGES["sched_dep_time"].low, le=_RANGES["sched_dep_time"].high,
        description="Scheduled local departure time, HHMM.",
    )  # fmt: skip
    sched_arr_time: int = Field(
        ge=_RANGES["sched_arr_time"].low, le=_RANGES["sched_arr_time"].high,
        description="Scheduled local arrival time, HHMM.",
    )  # fmt: skip
    carrier: str = Field(pattern=r"^[A-Z0-9]{2}$", description="Two-letter carrier code.")
    flight: int = Field(ge=1, le=9999, description="Flight number.")
    tailnum: str | None = Field(
        default=None, pattern=r"^[A-Z0-9]{2,8}$", description="Plane tail number, if assigned."
    )
    origin: str = Field(pattern=r"^[A-Z]{3}$", description="Origin airport (FAA code).")
    dest: str = Field(pattern=r"^[A-Z]{3}$", description="Destination airport (FAA code).")
    distance: float = Field(
        ge=_RANGES["distance"].low, le=_RANGES["distance"].high, description="Route miles."
    )

    @field_validator("sched_dep_time", "sched_arr_time")
    @classmethod
    def _is_a_clock_time(cls, value: int) -> int:
        if value % 100 > 59:
            raise ValueError("minutes (the last two digits) must be 00-59")
        return value


def schedule_columns(items: Sequence[FlightRequest]) -> dict[str, list]:
    """Requests as the ``SCHEDULE_COLUMNS`` the feature code takes."""
    return {
        "year": [i.date.year for i in items],
        "month": [i.date.month for i in items],
        "day": [i.date.day for i in items],
        "sched_dep_time": [i.sched_dep_time for i in items],
        "sched_arr_time": [i.sched_arr_time for i in items],
        "carrier": [i.carrier for i in items],
        "flight": [i.flight for i in items],
        "tailnum": [i.tailnum for i in items],
        "origin": [i.origin for i in items],
        "dest": [i.dest for i in items],
        "distance": [i.distance for i in items],
    }


def request_items(flights: pd.DataFrame) -> list[dict]:
    """What a caller would send for each of ``flights`` (clean flights), in order."""
    columns = ["sched_dep_time", "sched_arr_time", "carrier", "flight", "tailnum", "origin",
               "dest", "distance"]  # fmt: skip
    frame = flights.loc[:, columns].astype(object).where(flights[columns].notna(), None)
    dates = pd.to_datetime(flights[["year", "month", "day"]]).dt.strftime("%Y-%m-%d")
    return [
        {"date": day, **{k: _plain(v) for k, v in row.items()}}
        for day, row in zip(dates, frame.to_dict("records"), strict=True)
    ]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def lookups(tables: Mapping[str, pd.DataFrame]) -> FeatureLookups:
    return FeatureLookups(**tables)


def feature_columns(
    lookups: FeatureLookups, items: Sequence[FlightRequest]
) -> Mapping[str, np.ndarray]:
    return lookups.columns(schedule_columns(items))


WARM_UP = (
    {"date": "2013-07-04", "sched_dep_time": 900, "sched_arr_time": 1215, "carrier": "AA",
     "flight": 1, "tailnum": "N319AA", "origin": "JFK", "dest": "LAX", "distance": 2475},
    {"date": "2013-12-24", "sched_dep_time": 1730, "sched_arr_time": 2010, "carrier": "ZZ",
     "flight": 9999, "origin": "EWR", "dest": "XXX", "distance": 100},
)  # fmt: skip
"""A known flight and one where every lookup misses."""


def served_model(max_batch: int = 1000):
    """The flights model's champion, as the prediction service serves it."""
    from ml_assets.pipelines.flights.model import FLIGHTS_MODEL
    from serving.spec import ServedModel

    return ServedModel(
        registered_model=FLIGHTS_MODEL.settings["registered_model_name"],
        request=FlightRequest,
        features=FLIGHTS_MODEL.features,
        snapshot_asset=(config.KEY_PREFIX, "online_features"),
        lookups=lookups,
        columns=feature_columns,
        id_column="flight_id",
        prediction="arr_delay",
        warm_up=WARM_UP,
        max_batch=max_batch,
    )


def deploy_spec():
    """The flights model's deploy layer: endpoint, smoke test rows, batch predictions."""
    import dagster as dg

    from ml_assets.deployment.assets import DeploySpec
    from ml_assets.pipelines.flights.assets import key
    from ml_assets.pipelines.flights.model import FLIGHTS_MODEL
    from ml_assets.pipelines.flights.schemas import FEATURE_DESCRIPTIONS

    batch_columns = ("flight_id", "scheduled_departure", "carrier", "origin", "dest")
    return DeploySpec(
        key_prefix=config.KEY_PREFIX,
        model_name=FLIGHTS_MODEL.settings["registered_model_name"],
        features=FLIGHTS_MODEL.features,
        registered_model=key("registered_model"),
        features_asset=key("flight_features"),
        requests_asset=key("flights_clean"),
        request_items=request_items,
        id_column="flight_id",
        prediction="arr_delay",
        partitions_def=config.DAILY,
        batch_columns=batch_columns,
        batch_schema=dg.TableSchema(
            columns=[
                *(dg.TableColumn(c, description=FEATURE_DESCRIPTIONS[c]) for c in batch_columns),
                dg.TableColumn(
                    "predicted_arr_delay",
                    "float64",
                    "The champion's predicted arrival delay, minutes.",
                ),
                dg.TableColumn(
                    "model_version",
                    "string",
                    "Registry version of the champion that made the prediction.",
                ),
            ]
        ),
        owners=config.OWNERS,
    )
