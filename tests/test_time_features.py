"""Each declared time feature equals a straightforward pandas reference on random data.

The references look every row's answer up one row at a time (the rows of its group in the
window, then a pandas statistic of them); the platform computes them vectorised per group. Rows
come in random order, groups have gaps of missing days, values have missing values.
"""

from datetime import date, timedelta

import holidays
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_assets.contract.features import Features
from ml_assets.data.time_features import time_features, with_time_features

pytestmark = pytest.mark.unit

START = date(2022, 12, 20)
STAT = st.sampled_from(["mean", "sum", "min", "max", "std"])
STEPS = st.sampled_from(["days", "rows"])


@st.composite
def series(draw: st.DrawFn) -> pd.DataFrame:
    """Rows of up to three groups over 40 days, at most one a day per group, some days missing,
    in random order; values whole numbers or missing."""
    cells = draw(
        st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 39)), max_size=40, unique=True)
    )
    values = draw(
        st.lists(
            st.one_of(st.none(), st.integers(-1000, 1000)), min_size=len(cells), max_size=len(cells)
        )
    )
    order = draw(st.permutations(range(len(cells))))
    return pd.DataFrame(
        {
            "at": pd.to_datetime([START + timedelta(days=cells[i][1]) for i in order]),
            "g": [cells[i][0] for i in order],
            "v": pd.array([values[i] for i in order], dtype="Float64").astype("float64"),
        }
    )


def _declare(steps: str, **transforms: object) -> Features:
    return Features.model_validate(
        {
            "input": "rows",
            "history": {"rows": {"days": 60}},
            "time": {"column": "at", "steps": steps},
            **transforms,
        }
    )


def _group_rows(frame: pd.DataFrame, i: int) -> pd.DataFrame:
    """Row ``i``'s group in time order, with each row's position in it."""
    group = frame[frame["g"] == frame.at[i, "g"]].sort_values("at", kind="stable")
    return group.assign(position=range(len(group)))


def _stat(values: pd.Series, stat: str) -> float:
    return values.sum(min_count=1) if stat == "sum" else getattr(values, stat)()


def _in_window(frame: pd.DataFrame, i: int, steps: str, first: int, last: int) -> pd.Series:
    """Values of row ``i``'s group ``first`` … ``last`` steps before it (0: its own step)."""
    group = _group_rows(frame, i)
    if steps == "days":
        back = (frame.at[i, "at"] - group["at"]).dt.days
    else:
        back = group.at[i, "position"] - group["position"]
    return group["v"][(back >= last) & (back <= first)]


def _close(actual: pd.Series, expected: list[float]) -> None:
    np.testing.assert_allclose(actual.to_numpy(float), expected, rtol=1e-7, atol=1e-6)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(frame=series(), periods=st.lists(st.integers(1, 10), min_size=1, max_size=2, unique=True),
       steps=STEPS)  # fmt: skip
def test_lag_is_the_value_periods_steps_earlier_in_the_group(
    frame: pd.DataFrame, periods: list[int], steps: str
) -> None:
    declared = _declare(steps, lags=[{"column": "v", "periods": periods, "by": "g"}])
    out = time_features(frame, declared)
    for period in periods:
        expected = []
        for i in frame.index:
            found = _in_window(frame, i, steps, period, period)
            expected.append(found.iloc[0] if len(found) else np.nan)
        _close(out[f"v_lag_{period}_by_g"], expected)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(frame=series(), window=st.integers(1, 10), stat=STAT, steps=STEPS,
       closed=st.sampled_from(["left", "right"]), grouped=st.booleans())  # fmt: skip
def test_rolling_is_the_statistic_of_the_window_before_the_row(
    frame: pd.DataFrame, window: int, stat: str, steps: str, closed: str, grouped: bool
) -> None:
    spec = {"column": "v", "window": window, "stats": [stat], "closed": closed}
    if not grouped:
        frame = frame.drop_duplicates("at").assign(g="a").reset_index(drop=True)
    declared = _declare(steps, rolling=[{**spec, "by": ["g"] if grouped else []}])
    out = time_features(frame, declared)
    first, last = (window, 1) if closed == "left" else (window - 1, 0)
    expected = [_stat(_in_window(frame, i, steps, first, last), stat) for i in frame.index]
    _close(out[f"v_{stat}_{window}" + ("_by_g" if grouped else "")], expected)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(frame=series(), stat=STAT, steps=STEPS)
def test_expanding_is_the_statistic_of_every_earlier_step(
    frame: pd.DataFrame, stat: str, steps: str
) -> None:
    declared = _declare(steps, expanding=[{"column": "v", "stats": [stat], "by": "g"}])
    out = time_features(frame, declared)
    expected = [_stat(_in_window(frame, i, steps, 10**6, 1), stat) for i in frame.index]
    _close(out[f"v_expanding_{stat}_by_g"], expected)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(days=st.lists(st.dates(date(1990, 1, 1), date(2040, 12, 31)), min_size=1, max_size=30),
       subdivision=st.sampled_from([None, "IL", "NY"]))  # fmt: skip
def test_calendar_and_holidays_are_those_of_the_rows_day(
    days: list[date], subdivision: str | None
) -> None:
    declared = _declare(
        "days",
        calendar=["dayofweek", "month", "dayofyear", "weekofyear", "weekend"],
        holidays={"country": "US", "subdivision": subdivision},
    )
    out = time_features(pd.DataFrame({"at": pd.to_datetime(days)}), declared)
    calendar = holidays.country_holidays("US", subdiv=subdivision)
    expected = pd.DataFrame(
        {
            "dayofweek": [d.weekday() for d in days],
            "month": [d.month for d in days],
            "dayofyear": [d.timetuple().tm_yday for d in days],
            "weekofyear": [d.isocalendar()[1] for d in days],
            "weekend": [int(d.weekday() >= 5) for d in days],
            "holiday": [int(d in calendar) for d in days],
        }
    )
    pd.testing.assert_frame_equal(out, expected)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(frame=series(), cut=st.integers(0, 39))
def test_history_then_partition_equals_the_whole_series(frame: pd.DataFrame, cut: int) -> None:
    """A partition's features, computed with its history, are those of the whole series."""
    declared = _declare(
        "days",
        lags=[{"column": "v", "periods": [1, 7], "by": "g"}],
        rolling=[{"column": "v", "window": 7, "stats": ["mean", "std"], "by": "g"}],
        calendar=["dayofweek"],
    )
    boundary = pd.Timestamp(START + timedelta(days=cut))
    history, rows = frame[frame["at"] < boundary], frame[frame["at"] >= boundary]
    whole = pd.concat([frame, time_features(frame, declared)], axis=1)
    pd.testing.assert_frame_equal(
        with_time_features(rows, history, declared), whole[frame["at"] >= boundary]
    )


def test_a_missing_day_gives_nan_not_the_previous_rows_value() -> None:
    frame = pd.DataFrame(
        {"at": pd.to_datetime(["2022-01-01", "2022-01-02", "2022-01-04"]), "v": [1.0, 2.0, 4.0]}
    )
    by_days = time_features(frame, _declare("days", lags=[{"column": "v", "periods": [1]}]))
    by_rows = time_features(frame, _declare("rows", lags=[{"column": "v", "periods": [1]}]))
    assert by_days["v_lag_1"].iloc[1] == 1.0 and np.isnan(by_days["v_lag_1"].iloc[2])
    assert by_rows["v_lag_1"].tolist()[1:] == [1.0, 2.0]


def test_a_lag_by_days_refuses_two_rows_of_a_day_in_a_group() -> None:
    frame = pd.DataFrame({"at": pd.to_datetime(["2022-01-01"] * 2), "v": [1.0, 2.0]})
    with pytest.raises(ValueError, match="one row per day and group"):
        time_features(frame, _declare("days", lags=[{"column": "v", "periods": [1]}]))


def test_days_are_local_calendar_days() -> None:
    """Across a daylight-saving change, a lag of one day is still yesterday's row."""
    at = pd.date_range("2022-03-12 08:00", periods=3, freq="D", tz="America/Chicago")
    frame = pd.DataFrame({"at": at, "v": [1.0, 2.0, 3.0]})
    out = time_features(frame, _declare("days", lags=[{"column": "v", "periods": [1]}]))
    assert out["v_lag_1"].tolist()[1:] == [1.0, 2.0]
