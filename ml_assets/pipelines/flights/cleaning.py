"""Cleaning rules for flights and weather: typed, deduplicated, outliers and gaps handled.

Plain functions of data frames (no Dagster), applying the rules declared in ``config``.
"""

from datetime import date

import numpy as np
import pandas as pd

from ml_assets.data.cleaning import Cleaned, Triage
from ml_assets.pipelines.flights import config

FLIGHT_NUMBERS = (
    "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
    "sched_arr_time", "arr_delay", "flight", "air_time", "distance", "hour", "minute",
)  # fmt: skip
WEATHER_NUMBERS = ("year", "month", "day", "hour", *config.WEATHER_MEASURES)


def _is_on(triage: Triage, day: date) -> pd.Series:
    parsed = triage.parsed
    return (
        (parsed["year"] == day.year) & (parsed["month"] == day.month) & (parsed["day"] == day.day)
    )


def clean_flights(raw: pd.DataFrame, day: date) -> Cleaned:
    """Split one day's raw flights into clean and rejected rows.

    Cancelled flights (no departure time) are kept and flagged ``cancelled``; flights that
    departed but have no arrival delay (diverted) are kept and flagged ``diverted``.
    """
    triage = Triage(raw, config.FLIGHT_COLUMNS)
    triage.corrupt_lines()
    triage.missing_columns(config.FLIGHT_COLUMNS)
    triage.numbers(FLIGHT_NUMBERS)
    triage.timestamps(["time_hour"])
    triage.required(config.FLIGHT_REQUIRED)
    triage.ranges(config.FLIGHT_RANGES)
    triage.reject(~_is_on(triage, day), "wrong_partition")
    triage.duplicates(config.FLIGHT_KEY)

    kept = triage.kept()
    for column in ("year", "month", "day", "sched_dep_time", "sched_arr_time", "flight",
                   "distance", "hour", "minute"):  # fmt: skip
        kept[column] = kept[column].astype("int64")
    kept["tailnum"] = kept["tailnum"].astype("string")
    kept["cancelled"] = kept["dep_time"].isna()
    kept["diverted"] = ~kept["cancelled"] & kept["arr_delay"].isna()
    kept["scheduled_departure"] = pd.to_datetime(
        kept[["year", "month", "day", "hour", "minute"]]
    ).dt.tz_localize(config.TIMEZONE, ambiguous="NaT", nonexistent="shift_forward")
    notes = {"cancelled": int(kept["cancelled"].sum()), "diverted": int(kept["diverted"].sum())}
    return Cleaned(kept, triage.rejected(), len(kept), notes)


def _missing_run_lengths(missing: np.ndarray) -> np.ndarray:
    """For each position, the length of the run of equal ``missing`` flags it is in (0 where
    the value is present)."""
    run = np.cumsum(np.r_[True, missing[1:] != missing[:-1]])
    return np.bincount(run, weights=missing)[run]


def _fill_short_gaps(station: pd.DataFrame) -> pd.DataFrame:
    """Linearly interpolate each column's runs of at most ``WEATHER_MAX_GAP_HOURS`` missing
    hours (edges take the nearest reading); longer runs stay missing as a whole
    (``interpolate(limit=...)`` would fill part of a long gap)."""
    values = station.to_numpy(dtype="float64", copy=True)
    hours = np.arange(len(values))
    for column in values.T:  # views: filling them fills ``values``
        missing = np.isnan(column)
        if missing.any() and not missing.all():
            short = missing & (_missing_run_lengths(missing) <= config.WEATHER_MAX_GAP_HOURS)
            column[short] = np.interp(hours[short], hours[~missing], column[~missing])
    return pd.DataFrame(values, index=station.index, columns=station.columns)


def clean_weather(raw: pd.DataFrame, day: date) -> Cleaned:
    """Split one day's raw hourly weather into clean and rejected rows.

    The clean table has one row per origin airport and local hour of ``day``: blanked outliers
    and missing hours are interpolated within ``WEATHER_MAX_GAP_HOURS``; rows that were not in
    the raw file are flagged ``imputed``.
    """
    triage = Triage(raw, config.WEATHER_COLUMNS)
    triage.corrupt_lines()
    triage.missing_columns(config.WEATHER_COLUMNS)
    triage.numbers(WEATHER_NUMBERS)
    triage.timestamps(["time_hour"])
    triage.required(config.WEATHER_REQUIRED)
    triage.reject(~triage.values["origin"].isin(config.ORIGINS), "unknown_origin")
    blanked = triage.ranges(config.WEATHER_RANGES)
    triage.reject(~_is_on(triage, day), "wrong_partition")
    hours = pd.date_range(pd.Timestamp(day), periods=25, freq="h", tz=config.TIMEZONE)
    hours = hours[hours.date == day].tz_convert("UTC")  # 23, 24 or 25 hours across DST
    triage.reject(~triage.parsed["time_hour"].isin(hours), "off_grid:time_hour")
    triage.duplicates(config.WEATHER_KEY)
    readings = triage.kept()

    grid = pd.MultiIndex.from_product([config.ORIGINS, hours], names=["origin", "time_hour"])
    measured = readings.set_index(["origin", "time_hour"])[list(config.WEATHER_MEASURES)]
    clean = measured.reindex(grid).reset_index()
    clean["imputed"] = ~clean.set_index(["origin", "time_hour"]).index.isin(measured.index)

    missing_before = int(clean[list(config.WEATHER_INTERPOLATED)].isna().sum().sum())
    filled = clean.groupby("origin", group_keys=False)[list(config.WEATHER_INTERPOLATED)].apply(
        _fill_short_gaps
    )
    clean[list(config.WEATHER_INTERPOLATED)] = filled
    clean["wind_gust"] = clean["wind_gust"].fillna(clean["wind_speed"])
    local = clean["time_hour"].dt.tz_convert(config.TIMEZONE)
    clean["hour"] = local.dt.hour.astype("int64")
    clean["origin"] = clean["origin"].astype("string")
    notes = {
        "outliers_blanked": sum(blanked.values()),
        "hours_imputed": int(clean["imputed"].sum()),
        "values_interpolated": missing_before
        - int(clean[list(config.WEATHER_INTERPOLATED)].isna().sum().sum()),
    }
    return Cleaned(clean, triage.rejected(), len(readings), notes)
