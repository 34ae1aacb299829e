"""What a statistical forecasting family costs, and whether its saved form predicts the same.

Run as ``.venv/bin/python benchmarks/forecasting.py [--quick]`` from the project root. On a
daily series shaped as a transit station's ridership (a drifting level, quiet weekends, a yearly
swing, autocorrelated noise; 5,698 days as the Chicago series, 365 with ``--quick``):

- **first call**: a fresh interpreter's ``import`` of statsforecast and its first fit, then a
  second fit in the same process (statsforecast 2.1 compiles its models ahead of time: there is
  no JIT; the first call's extra cost is the import, statsmodels and scipy included);
- **fit / predict**: each family (``auto_ets``, ``auto_arima``) fitted on all but the last
  ``HORIZON`` days, its forecast path computed; one row scored by the saved forecaster (a
  lookup), the median of many;
- **parity**: the forecaster after a skops round trip (as the registry and the service load it)
  predicts for each held-out day exactly what statsforecast forecasts for that horizon;
- **folds**: rolling folds (``FOLDS`` windows of ``WINDOW`` days, expanding) of AutoETS against
  the seasonal naive (the value 7 days before): each fold's MAE and MASE.

Exits 1 if a parity check fails.
"""

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np
import pandas as pd
from _common import Checks

from ml_assets.modeling.forecasters import StatisticalForecaster

HORIZON = 28
FOLDS, WINDOW = 3, 28
FIRST_CALL = """
import time, numpy as np
began = time.perf_counter()
from statsforecast.models import AutoETS
imported = time.perf_counter()
y = 1000 + 100 * np.sin(np.arange(730) * 2 * np.pi / 7)
AutoETS(season_length=7).fit(y)
first = time.perf_counter()
AutoETS(season_length=7).fit(y)
second = time.perf_counter()
print(imported - began, first - imported, second - first)
"""


def series(days: int) -> pd.DataFrame:
    """``days`` days of ridership-shaped counts from 2001-01-01."""
    rng = np.random.default_rng(3)
    dates = pd.date_range("2001-01-01", periods=days, freq="D")
    t = np.arange(days)
    weekly = np.array([1.0, 1.05, 1.05, 1.0, 0.95, 0.45, 0.35])[dates.dayofweek]
    noise = np.zeros(days)
    for i in range(1, days):
        noise[i] = 0.3 * noise[i - 1] + rng.normal(0, 60)
    level = 1500 + 0.2 * t + 50 * np.sin(2 * np.pi * t / 365.25)
    return pd.DataFrame({"day": dates, "riders": level * weekly + noise})


def first_call() -> tuple[float, float, float]:
    out = subprocess.run(
        [sys.executable, "-c", FIRST_CALL], capture_output=True, text=True, check=True
    ).stdout
    imported, first, second = (float(x) for x in out.split())
    return imported, first, second


def fit_and_check(frame: pd.DataFrame, family: str) -> dict[str, float]:
    """Fit/predict times and the saved forecaster's largest difference from statsforecast."""
    import skops.io

    train, held_out = frame.iloc[:-HORIZON], frame.iloc[-HORIZON:]
    forecaster = StatisticalForecaster(family, {"season_length": 7}, "day", HORIZON)
    began = time.perf_counter()
    forecaster.fit(train, train["riders"])
    fitted = time.perf_counter() - began
    library = forecaster._model().fit(train["riders"].to_numpy())
    began = time.perf_counter()
    path = library.predict(h=HORIZON)["mean"]
    path_s = time.perf_counter() - began
    saved = skops.io.dumps(forecaster)
    loaded = skops.io.loads(saved, trusted=skops.io.get_untrusted_types(data=saved))
    one = held_out.iloc[[5]]
    timings = []
    for _ in range(200):
        began = time.perf_counter()
        loaded.predict(one)
        timings.append(time.perf_counter() - began)
    difference = float(np.max(np.abs(loaded.predict(held_out) - path)))
    return {
        "fit_s": fitted,
        "path_s": path_s,
        "row_ms": statistics.median(timings) * 1000,
        "saved_kb": len(saved) / 1024,
        "parity": difference,
        "model": forecaster.description_,
        "mae": float(np.mean(np.abs(loaded.predict(held_out) - held_out["riders"]))),
    }


def folds(frame: pd.DataFrame) -> list[tuple[float, float]]:
    """Each rolling fold's (AutoETS MAE, seasonal-naive MAE), oldest first."""
    results = []
    naive = frame["riders"].shift(7)
    for k in range(FOLDS):
        end = len(frame) - (FOLDS - 1 - k) * WINDOW
        train, window = frame.iloc[: end - WINDOW], frame.iloc[end - WINDOW : end]
        model = StatisticalForecaster("auto_ets", {"season_length": 7}, "day", WINDOW)
        predicted = model.fit(train, train["riders"]).predict(window)
        results.append(
            (
                float(np.mean(np.abs(predicted - window["riders"]))),
                float(np.mean(np.abs(naive.iloc[end - WINDOW : end] - window["riders"]))),
            )
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="365 days instead of 5,698")
    args = parser.parse_args()
    frame = series(365 if args.quick else 5698)
    imported, first, second = first_call()
    print(f"first call: import {imported:.2f} s, first fit {first:.2f} s, second {second:.2f} s")
    import statsforecast.models  # noqa: F401  imported once here: the fits below exclude it

    checks = Checks()
    for family in ("auto_ets", "auto_arima"):
        r = fit_and_check(frame, family)
        print(
            f"{family} on {len(frame)} days: {r['model']}, fit {r['fit_s']:.2f} s, forecast path "
            f"{r['path_s'] * 1000:.2f} ms, one row served {r['row_ms']:.3f} ms, saved "
            f"{r['saved_kb']:.0f} KiB, held-out MAE {r['mae']:.1f}"
        )
        print(f"{family} parity: saved vs statsforecast max abs difference {r['parity']:.3g}")
        checks.require(r["parity"] == 0, f"{family}: saved and library forecasts differ")
    for number, (model, naive) in enumerate(folds(frame)):
        print(
            f"fold {number}: auto_ets MAE {model:.1f}, seasonal naive MAE {naive:.1f}, "
            f"MASE {model / naive:.3f}"
        )
    return checks.report()


if __name__ == "__main__":
    sys.exit(main())
