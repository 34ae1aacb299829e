"""Cleaning rules for a month of days at Clark/Lake: typed, one row per day, in its month.

A plain function of a data frame (no Dagster), applying the rules declared for the ``boardings``
source in ``pipeline.yaml``; beyond them, a date must be a real calendar day of the month and a
game flag 0 or 1.
"""

from collections.abc import Mapping
from datetime import date

import pandas as pd

from ml_assets.data.cleaning import Cleaned, Triage
from ml_assets.data.plausibility import NO_HISTORY, Accepted
from ml_assets.pipelines import declaration

DAYS = declaration("ridership").source("boardings")
GAMES = ("bulls_home", "bears_home", "blackhawks_home", "cubs_home")
NUMBERS = ("rides", "temp", "precip_max", "rain", "snow", *GAMES)


def clean_days(
    raw: pd.DataFrame,
    month: date,
    references: Mapping[str, pd.DataFrame],
    history: Accepted = NO_HISTORY,
) -> Cleaned:
    """Split one month's raw days into clean and rejected rows: ``date`` a local calendar date
    (``unparseable:date``; another month's is a ``wrong_partition``), the game flags booleans
    (``not_whole:<flag>``), one row per date; the declared plausibility rules (none yet) judged
    against ``history``, the accepted months before."""
    triage = Triage(raw, DAYS.columns)
    notes = triage.declared(DAYS, NUMBERS)
    text = triage.values["date"]
    day = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    triage.reject(text.notna() & day.isna(), "unparseable:date")
    triage.reject(day.notna() & (day.dt.to_period("M") != pd.Period(month, "M")), "wrong_partition")
    triage.parsed["date"] = day
    for flag in GAMES:
        triage.reject(triage.parsed[flag] % 1 != 0, f"not_whole:{flag}")
    notes |= triage.plausible(DAYS, history)
    triage.duplicates(DAYS.key)

    kept = triage.kept()
    kept["date"] = kept["date"].astype("datetime64[ns]")
    for flag in GAMES:
        kept[flag] = kept[flag].eq(1).to_numpy(dtype=bool)
    return Cleaned(kept, triage.rejected(), len(kept), notes, tuple(triage.judgements))
