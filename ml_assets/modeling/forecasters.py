"""Statistical forecasters (statsforecast's AutoETS and AutoARIMA) as model families.

A forecaster learns the target's daily series, not a mapping from features: it reads each
row's date (the model's time column), averages the target over the rows of a day, fills days
without rows by linear interpolation and fits the series. What it predicts for a row is
defined by the row's date ``d`` and the last day of its training series, the cutoff:

- ``d`` after the cutoff: the forecast ``h = d - cutoff`` days ahead, made from the fitted state
  at the cutoff (the same for every row of that date, whatever else the row holds);
- ``d`` on or before the cutoff, within the series: the one-step-ahead in-sample fit of ``d``;
- ``d`` more than ``max_horizon_days`` after the cutoff, before the series, or missing: no
  prediction (NaN; the prediction service answers such an item with 422, batch predictions
  leave it missing).

The fitted forecaster keeps only its cutoff, the forecasts for ``h = 1 … max_horizon_days`` and
the in-sample fit: a few numbers, saved and scored without statsforecast (no ONNX converter
exists for it), so the service loads it without the library and scores a row by a lookup.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_SEASON_DAYS = 7


class StatisticalForecaster:
    """A statistical forecaster of ``family`` (``auto_ets``, ``auto_arima``) with ``params``
    (statsforecast's arguments), reading dates from ``time_column``; scikit-learn's fit/predict
    protocol, so the study, the registry and the service treat it as any other model. The
    service loads it by its name, which the model format trusts
    (``ml_assets.contract.model_format.FORECAST_TYPES``): a rename is a change of format."""

    def __init__(
        self, family: str, params: Mapping[str, Any], time_column: str, max_horizon_days: int
    ) -> None:
        self.family = family
        self.params = dict(params)
        self.time_column = time_column
        self.max_horizon_days = max_horizon_days

    def fit(self, X: pd.DataFrame, y: Sequence[float]) -> "StatisticalForecaster":
        series = daily_series(X[self.time_column], y)
        model = self._model().fit(series.to_numpy())
        self.start_ = series.index[0].date().isoformat()
        self.cutoff_ = series.index[-1].date().isoformat()
        self.path_ = np.asarray(model.predict(h=self.max_horizon_days)["mean"], dtype="float64")
        fitted = np.asarray(model.predict_in_sample()["fitted"], dtype="float64")
        # the first days of an ARIMA have no fit: they are their own
        self.fitted_ = np.where(np.isnan(fitted), series.to_numpy(), fitted)
        self.description_ = _description(self.family, model).strip()
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        days = pd.to_datetime(np.asarray(X[self.time_column])).to_numpy().astype("datetime64[D]")
        # a missing date (NaT) counts as far before the series: no prediction
        ahead = (days - np.datetime64(self.cutoff_, "D")).astype("int64")
        since = (days - np.datetime64(self.start_, "D")).astype("int64")
        forecast = self.path_[np.clip(ahead - 1, 0, len(self.path_) - 1)]
        fitted = self.fitted_[np.clip(since, 0, len(self.fitted_) - 1)]
        predicted = np.where(ahead >= 1, forecast, fitted)
        return np.where((ahead > self.max_horizon_days) | (since < 0), np.nan, predicted)

    def _model(self):
        from statsforecast.models import AutoARIMA, AutoETS

        params = {"season_length": DEFAULT_SEASON_DAYS, **self.params}
        if self.family == "auto_ets":
            return AutoETS(**params)
        if self.family == "auto_arima":
            return AutoARIMA(**params)
        raise ValueError(f"no statistical family {self.family!r}")


def daily_series(dates: pd.Series, y: Sequence[float]) -> pd.Series:
    """The target by day: the mean over each day's rows, days without rows (or without a
    known target) interpolated linearly between their neighbours."""
    days = pd.to_datetime(pd.Series(np.asarray(dates))).dt.normalize()
    frame = pd.DataFrame({"day": days.to_numpy(), "y": np.asarray(y, dtype="float64")})
    by_day = frame.dropna().groupby("day")["y"].mean()
    if len(by_day) < 2:
        raise ValueError(f"a daily series needs at least 2 days with a target, not {len(by_day)}")
    every_day = pd.date_range(by_day.index[0], by_day.index[-1], freq="D")
    return by_day.reindex(every_day).interpolate(method="linear")


def _description(family: str, model) -> str:
    """The chosen model as statsforecast names it: ``ETS(A,N,A)``, ``ARIMA(0,0,0)(0,1,1)[7]``."""
    if family == "auto_arima":
        from statsforecast.arima import arima_string

        return arima_string(model.model_)
    return str(model.model_.get("method", family))
