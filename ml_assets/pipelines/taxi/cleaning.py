"""Cleaning rules for taxi trips: typed, deduplicated, values in their domains, in their month.

A plain function of a data frame (no Dagster), applying the rules declared for the ``trips``
source in ``pipeline.yaml`` (ranges, the value domains of the export's text columns).
"""

from collections.abc import Mapping
from datetime import date

import pandas as pd

from ml_assets.data.cleaning import Cleaned, Triage
from ml_assets.data.plausibility import NO_HISTORY, Accepted
from ml_assets.pipelines import declaration

TRIPS = declaration("taxi").source("trips")

DAYS = tuple(TRIPS.codes["dow"].domain or ())
MONTHS = tuple(TRIPS.codes["month"].domain or ())
"""The export's month names, January first (fixed, not the machine's locale)."""
NUMBERS = ("distance", "hour")


def clean_trips(
    raw: pd.DataFrame,
    month: date,
    references: Mapping[str, pd.DataFrame],
    history: Accepted = NO_HISTORY,
) -> Cleaned:
    """Split one month's raw trips into clean and rejected rows, the plausibility rules judged
    against ``history`` (the accepted months before).

    A row whose month name is another month's is rejected as ``wrong_partition``; ``tip`` and
    ``local`` become booleans, ``hour`` a whole number.
    """
    triage = Triage(raw, TRIPS.columns)
    notes = triage.declared(TRIPS, NUMBERS)
    triage.reject(triage.parsed["hour"] % 1 != 0, "not_whole:hour")
    triage.reject(triage.values["month"] != MONTHS[month.month - 1], "wrong_partition")
    notes |= triage.plausible(TRIPS, history)
    triage.duplicates(TRIPS.key)

    kept = triage.kept()
    for column in ("tip", "local"):
        kept[column] = kept[column].eq("yes").to_numpy(dtype=bool)
    kept["hour"] = kept["hour"].astype("int64")
    return Cleaned(kept, triage.rejected(), len(kept), notes, tuple(triage.judgements))
