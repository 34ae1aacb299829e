"""Flight features: what is known about a flight when it is scheduled.

Plain functions of data frames shared by the ``flight_features`` asset and the serving app, so
a flight gets the same features in training and in production. Recent-delay statistics come
only from flights of earlier days (``trailing_stats``), never from the flight's own day.
"""

import functools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ml_assets.pipelines.flights import config

SCHEDULE_COLUMNS = (
    "year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight",
    "tailnum", "origin", "dest", "distance",
)  # fmt: skip
"""What a scheduler knows before departure: the inputs of ``build_features``."""
TARGET = "arr_delay"
"""Arrival delay in minutes; missing for cancelled and diverted flights."""
ROUTE = ("origin", "dest")
CARRIER = ("carrier",)
WEATHER_FEATURES = config.WEATHER_MEASURES
STAT_NAMES = ("flights_7d", "arr_delay_mean_7d", "delayed_share_7d", "cancelled_share_7d")

CATEGORICAL_FEATURES = ("carrier", "origin", "dest")
NUMERIC_FEATURES = (
    "dep_hour", "dep_minute_of_day", "arr_hour", "scheduled_minutes", "weekday", "month",
    "day_of_year", "is_holiday", "days_to_holiday", "distance", "plane_age", "plane_seats",
    "plane_engines", *WEATHER_FEATURES, "weather_imputed",
    *(f"route_{s}" for s in STAT_NAMES), *(f"carrier_{s}" for s in STAT_NAMES),
)  # fmt: skip
MODEL_FEATURES = (*CATEGORICAL_FEATURES, *NUMERIC_FEATURES)


def trailing_stats(history: pd.DataFrame, keys: Sequence[str], prefix: str) -> pd.DataFrame:
    """Delay statistics per ``keys`` over ``history`` (the previous days' clean flights)."""
    columns = [f"{prefix}_{s}" for s in STAT_NAMES]
    if history.empty:
        return pd.DataFrame(
            {**{k: pd.Series(dtype="string") for k in keys},
             **{c: pd.Series(dtype="float64") for c in columns}}
        )  # fmt: skip
    frame = history.assign(
        _delayed=(history[TARGET] > config.DELAYED_MINUTES).astype(float),
        _cancelled=history["cancelled"].astype(float),
    )
    grouped = frame.groupby(list(keys), observed=True)
    stats = pd.DataFrame(
        {
            columns[0]: grouped.size(),
            columns[1]: grouped[TARGET].mean(),
            columns[2]: grouped["_delayed"].mean(),
            columns[3]: grouped["_cancelled"].mean(),
        }
    )
    return stats.reset_index()


@functools.cache
def _holidays(years: tuple[int, ...]) -> np.ndarray:
    import holidays

    return np.array(
        sorted(holidays.country_holidays(config.HOLIDAY_COUNTRY, years=years)),
        dtype="datetime64[D]",
    )


def _days_to_holiday(dates: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Whether each date is a public holiday, and how many days away the nearest one is."""
    years = dates.dt.year.unique()
    known = _holidays(tuple(sorted({*(years - 1), *years, *(years + 1)})))
    days = dates.dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    position = np.searchsorted(known, days)
    after = known[np.minimum(position, len(known) - 1)]
    before = known[np.maximum(position - 1, 0)]
    distance = np.minimum(np.abs(after - days), np.abs(days - before)).astype(int)
    return pd.Series(distance == 0, index=dates.index), pd.Series(distance, index=dates.index)


def build_features(
    flights: pd.DataFrame,
    weather: pd.DataFrame,
    planes: pd.DataFrame,
    route_stats: pd.DataFrame,
    carrier_stats: pd.DataFrame,
) -> pd.DataFrame:
    """One feature row per flight, in the order of ``flights``.

    ``flights`` needs ``SCHEDULE_COLUMNS``; ``weather`` is clean hourly weather (``origin``,
    ``time_hour`` UTC, measures); ``planes`` the reference table; the stats come from
    ``trailing_stats`` over the days before. Unknown planes, weather or routes give missing
    values, which the model handles; ``arr_delay`` is carried as the target when present.
    """
    out = flights.loc[:, list(SCHEDULE_COLUMNS)].reset_index(drop=True)
    for column in ("carrier", "origin", "dest", "tailnum"):
        out[column] = out[column].astype("string")
    local = pd.to_datetime(
        pd.DataFrame(
            {
                "year": out["year"],
                "month": out["month"],
                "day": out["day"],
                "hour": out["sched_dep_time"] // 100,
                "minute": out["sched_dep_time"] % 100,
            }
        )
    )
    departure = local.dt.tz_localize(config.TIMEZONE, ambiguous="NaT", nonexistent="shift_forward")
    out.insert(0, "flight_id", _flight_ids(out))
    out["scheduled_departure"] = departure
    out["dep_hour"] = local.dt.hour
    out["dep_minute_of_day"] = local.dt.hour * 60 + local.dt.minute
    out["arr_hour"] = out["sched_arr_time"] // 100
    arrival_minutes = out["arr_hour"] * 60 + out["sched_arr_time"] % 100
    out["scheduled_minutes"] = (arrival_minutes - out["dep_minute_of_day"]) % (24 * 60)
    out["weekday"] = local.dt.weekday
    out["day_of_year"] = local.dt.dayofyear
    is_holiday, days_to_holiday = _days_to_holiday(local.dt.normalize())
    out["is_holiday"] = is_holiday.astype(int)
    out["days_to_holiday"] = days_to_holiday

    plane = planes.loc[:, ["tailnum", "year", "seats", "engines"]].rename(
        columns={"year": "plane_year", "seats": "plane_seats", "engines": "plane_engines"}
    )
    plane["tailnum"] = plane["tailnum"].astype("string")
    out = out.merge(plane.drop_duplicates("tailnum"), on="tailnum", how="left")
    out["plane_age"] = out["year"] - out.pop("plane_year")

    hourly = weather.loc[:, ["origin", "time_hour", *WEATHER_FEATURES, "imputed"]]
    hourly = hourly.rename(columns={"imputed": "weather_imputed"})
    hourly["origin"] = hourly["origin"].astype("string")
    out["time_hour"] = departure.dt.floor("h", ambiguous="NaT").dt.tz_convert("UTC")
    out = out.merge(hourly, on=["origin", "time_hour"], how="left")
    out["weather_imputed"] = out["weather_imputed"].astype("float")

    out = out.merge(_typed_keys(route_stats, ROUTE), on=list(ROUTE), how="left")
    out = out.merge(_typed_keys(carrier_stats, CARRIER), on=list(CARRIER), how="left")
    for prefix in ("route", "carrier"):
        out[f"{prefix}_flights_7d"] = out[f"{prefix}_flights_7d"].fillna(0)

    target = flights[TARGET].reset_index(drop=True) if TARGET in flights else np.nan
    out[TARGET] = target
    ordered = [
        "flight_id",
        "scheduled_departure",
        "time_hour",
        "tailnum",
        "flight",
        *MODEL_FEATURES,
    ]
    return out[[*ordered, TARGET]].astype({c: "float64" for c in NUMERIC_FEATURES})


def _typed_keys(stats: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    return stats.astype({key: "string" for key in keys})


def _flight_ids(flights: pd.DataFrame) -> pd.Series:
    return (
        flights["year"].astype(str) + "-" + flights["month"].astype(str).str.zfill(2) + "-"
        + flights["day"].astype(str).str.zfill(2) + "/" + flights["carrier"].astype(str)
        + flights["flight"].astype(str) + "/" + flights["origin"].astype(str) + "/"
        + flights["sched_dep_time"].astype(str).str.zfill(4)
    )  # fmt: skip
