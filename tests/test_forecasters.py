"""What a statistical forecaster predicts for a row, and the daily series it fits."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml_assets.modeling.forecasters import StatisticalForecaster, daily_series

pytestmark = pytest.mark.unit


def _series() -> pd.DataFrame:
    """120 days of a weekly pattern with noise, and an unrelated feature."""
    days = pd.date_range("2023-08-03", periods=120, freq="D")
    rng = np.random.default_rng(0)
    weekly = np.array([1.0, 1.05, 1.05, 1.0, 0.95, 0.45, 0.35])[days.dayofweek]
    return pd.DataFrame(
        {"day": days, "demand": 1000 * weekly + rng.normal(0, 20, len(days)), "other": 1.0}
    )


@pytest.mark.slow  # importing statsforecast alone takes 10-30 s on a loaded machine
@pytest.mark.parametrize("family", ["auto_ets", "auto_arima"])
def test_what_a_forecaster_predicts_for_a_row(family: str) -> None:
    """A row's prediction depends on its date alone: the forecast h days past the cutoff up
    to the horizon, the in-sample fit on or before the cutoff, nothing further or earlier."""
    rows = _series()
    train, later = rows.iloc[:90], rows.iloc[90:]
    forecaster = StatisticalForecaster(family, {"season_length": 7}, "day", 20)
    forecaster.fit(
        train.sample(frac=1, random_state=0), train["demand"].sample(frac=1, random_state=0)
    )

    assert forecaster.cutoff_ == "2023-10-31"
    predicted = forecaster.predict(later)
    assert np.array_equal(predicted[:20], forecaster.path_)
    assert np.isnan(predicted[20:]).all()  # past the horizon of 20 days
    shuffled = later.iloc[:20].assign(other=-5.0)
    assert np.array_equal(forecaster.predict(shuffled), predicted[:20])  # the date alone
    in_sample = forecaster.predict(train.iloc[[10, 50]])
    assert np.array_equal(in_sample, forecaster.fitted_[[10, 50]])
    before = train.iloc[:1].assign(day=train["day"].iloc[0] - dt.timedelta(days=1))
    assert np.isnan(forecaster.predict(before)).all()
    assert np.isnan(forecaster.predict(before.assign(day=pd.NaT))).all()  # no date, none


def test_a_daily_series_averages_a_day_and_fills_a_missing_one() -> None:
    dates = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-04"]))
    series = daily_series(dates, [1.0, 3.0, 8.0])
    assert series.tolist() == [2.0, 4.0, 6.0, 8.0]
    with pytest.raises(ValueError, match="at least 2 days"):
        daily_series(dates[:2], [1.0, np.nan])
