"""Declared time features, computed by the platform: lags, rolling and expanding windows,
calendar features and public holidays (``features:`` in the declaration).

Pure functions of a frame: a features partition is computed from its history and its own rows
together, then only its own rows are kept. Rows are ordered by the declared time column within
each group; a step is a calendar day of that time (a missing day is missing: its lag is NaN)
or a row of the group, as declared.
"""

from collections.abc import Callable

import numpy as np
import pandas as pd

from ml_assets.contract.features import HOLIDAY, Expanding, Features, Holidays, Lag, Rolling, Time

VALUE, TIME = "__value", "__time"


def with_time_features(
    rows: pd.DataFrame, history: pd.DataFrame | None, declared: Features
) -> pd.DataFrame:
    """``rows`` with the declared time features added, computed over ``history`` (the earlier
    partitions' rows) followed by ``rows``."""
    if not declared.outputs:
        return rows
    frame = pd.concat([history, rows], ignore_index=True) if history is not None else rows
    added = time_features(frame.reset_index(drop=True), declared).iloc[len(frame) - len(rows) :]
    out = rows.copy()
    for column in added:
        out[column] = added[column].to_numpy()
    return out


def time_features(frame: pd.DataFrame, declared: Features) -> pd.DataFrame:
    """The declared time features of every row of ``frame`` (same index), in declared order."""
    time = _times(frame, declared.time) if declared.time else None
    columns: dict[str, pd.Series] = {}
    for spec in declared.lags:
        columns |= lags(frame, time, spec, declared.time.steps)
    for spec in declared.rolling:
        columns |= rolling(frame, time, spec, declared.time.steps)
    for spec in declared.expanding:
        columns |= expanding(frame, time, spec, declared.time.steps)
    if declared.calendar:
        columns |= calendar(time, declared.calendar)
    if declared.holidays:
        columns[HOLIDAY] = holiday_flags(time, declared.holidays)
    return pd.DataFrame(columns, index=frame.index)


def _times(frame: pd.DataFrame, time: Time) -> pd.Series:
    values = pd.to_datetime(frame[time.column])
    if values.isna().any():
        raise ValueError(f"time column {time.column!r} has missing values")
    if time.steps == "rows":
        return values
    days = values.dt.normalize()  # the local calendar day, then steps of whole days
    return days.dt.tz_localize(None) if days.dt.tz is not None else days


def _series(frame: pd.DataFrame, time: pd.Series, spec: Lag | Rolling | Expanding) -> pd.DataFrame:
    """The column, its time and its group keys, in time order within the frame (stable)."""
    work = frame[spec.by].copy() if spec.by else pd.DataFrame(index=frame.index)
    work[VALUE] = pd.to_numeric(frame[spec.column]).astype("float64")
    work[TIME] = time
    return work.sort_values(TIME, kind="stable")


def _per_group(
    work: pd.DataFrame, by: list[str], apply: Callable[[pd.DataFrame], pd.Series]
) -> pd.Series:
    """``apply`` to each group's rows (in time order), as one series on ``work``'s index."""
    if not by:
        return apply(work)
    groups = work.groupby(by, sort=False, dropna=False)
    return pd.concat([apply(rows) for _, rows in groups]) if len(work) else work[VALUE]


def lags(frame: pd.DataFrame, time: pd.Series, spec: Lag, steps: str) -> dict[str, pd.Series]:
    """The column's value ``periods`` steps earlier in the row's group; NaN where there is none
    (by days: no row on that day)."""
    work = _series(frame, time, spec)
    out = {}
    if steps == "days":
        keys = [*spec.by, TIME]
        if work.duplicated(keys).any():
            raise ValueError(f"a lag of {spec.column} by days needs one row per day and group")
        for period, name in zip(spec.periods, spec.outputs, strict=True):
            wanted = work[keys].assign(**{TIME: work[TIME] - pd.Timedelta(days=period)})
            found = wanted.merge(work[[*keys, VALUE]], on=keys, how="left")[VALUE]
            out[name] = pd.Series(found.to_numpy(), index=work.index)
    else:
        for period, name in zip(spec.periods, spec.outputs, strict=True):
            out[name] = _per_group(work, spec.by, lambda g, p=period: g[VALUE].shift(p))
    return {name: series.reindex(frame.index) for name, series in out.items()}


def _window(values: pd.DataFrame, size: int | str, closed: str, stat: str) -> pd.Series:
    if isinstance(size, str):  # a duration: over the times
        series = pd.Series(values[VALUE].to_numpy(), index=values[TIME].to_numpy())
        window = series.rolling(size, closed=closed, min_periods=1)
    else:
        series = values[VALUE].shift(1) if closed == "left" else values[VALUE]
        window = series.rolling(size, min_periods=1)
    return pd.Series(getattr(window, stat)().to_numpy(), index=values.index)


def rolling(
    frame: pd.DataFrame, time: pd.Series, spec: Rolling, steps: str
) -> dict[str, pd.Series]:
    """Statistics of the column over the ``window`` steps before the row (``closed: left``) or
    ending at it (``right``), in its group; NaN values are skipped, NaN when none is left."""
    work = _series(frame, time, spec)
    size = f"{spec.window}D" if steps == "days" else spec.window
    return {
        name: _per_group(work, spec.by, lambda g, s=stat: _window(g, size, spec.closed, s)).reindex(
            frame.index
        )
        for stat, name in zip(spec.stats, spec.outputs, strict=True)
    }


def expanding(
    frame: pd.DataFrame, time: pd.Series, spec: Expanding, steps: str
) -> dict[str, pd.Series]:
    """Statistics of the column over every earlier step of the row's group in ``frame``."""
    work = _series(frame, time, spec)
    if steps == "days":
        span = (work[TIME].max() - work[TIME].min()).days + 1 if len(work) else 1
        size: int | str = f"{span}D"
    else:
        size = max(len(work), 1)
    return {
        name: _per_group(work, spec.by, lambda g, s=stat: _window(g, size, "left", s)).reindex(
            frame.index
        )
        for stat, name in zip(spec.stats, spec.outputs, strict=True)
    }


def calendar(time: pd.Series, names: list[str]) -> dict[str, pd.Series]:
    """Calendar features of each row's time, as integers."""
    values = {
        "dayofweek": time.dt.dayofweek,
        "month": time.dt.month,
        "dayofyear": time.dt.dayofyear,
        "weekofyear": time.dt.isocalendar().week,
        "weekend": time.dt.dayofweek >= 5,
    }
    return {name: values[name].astype("int64") for name in names}


def holiday_flags(time: pd.Series, declared: Holidays) -> pd.Series:
    """1 where the row's day is a public holiday of the declared calendar, else 0."""
    import holidays

    days = time.dt.date
    years = sorted({day.year for day in days})
    calendar_days = holidays.country_holidays(
        declared.country, subdiv=declared.subdivision, years=years
    )
    return pd.Series(np.fromiter((day in calendar_days for day in days), bool, len(days)),
                     index=time.index).astype("int64")  # fmt: skip
