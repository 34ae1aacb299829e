"""Cleaning rules for taxi trips: typed, deduplicated, values in their domains, in their month.

A plain function of a data frame (no Dagster), applying the rules declared for the ``trips``
source in ``pipeline.yaml`` plus the value domains of the export's text columns.
"""

from datetime import date

import pandas as pd

from ml_assets.data.cleaning import Cleaned, Triage
from ml_assets.pipelines import declaration

TRIPS = declaration("taxi").source("trips")

YES_NO = ("yes", "no")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
"""The export's month names, January first (fixed, not the machine's locale)."""
DOMAINS = {"tip": YES_NO, "local": YES_NO, "dow": DAYS, "month": MONTHS}
"""The values each text column of the export may hold."""
NUMBERS = ("distance", "hour")


def clean_trips(raw: pd.DataFrame, month: date) -> Cleaned:
    """Split one month's raw trips into clean and rejected rows.

    A row whose month name is another month's is rejected as ``wrong_partition``; ``tip`` and
    ``local`` become booleans, ``hour`` a whole number.
    """
    triage = Triage(raw, TRIPS.columns)
    triage.corrupt_lines()
    triage.missing_columns(TRIPS.columns)
    triage.numbers(NUMBERS)
    triage.required(TRIPS.required)
    triage.ranges(TRIPS.ranges)
    triage.reject(triage.parsed["hour"] % 1 != 0, "not_whole:hour")
    for column, allowed in DOMAINS.items():
        triage.reject(~triage.values[column].isin(allowed), f"out_of_domain:{column}")
    triage.reject(triage.values["month"] != MONTHS[month.month - 1], "wrong_partition")
    triage.duplicates(TRIPS.key)

    kept = triage.kept()
    for column in ("tip", "local"):
        kept[column] = kept[column].eq("yes").to_numpy(dtype=bool)
    kept["hour"] = kept["hour"].astype("int64")
    return Cleaned(kept, triage.rejected(), len(kept), {})
