"""The weather provider's API, as the flights pipeline's upstream: the real hourly weather of
the published days behind a paged JSON API with a bearer token and a rate limit
(``ml-assets publish flights --to rest``).

``GET /v1/weather/hourly?start=…&end=…`` answers the records whose ``time_hour`` falls in
``[start, end)``, paged, as ``ml_assets.upstream.paged_api`` serves a table::

    {"data": [{"origin": "EWR", "year": 2013, …, "wind_gust": null, …}, …],
     "meta": {"page": 1, "per_page": 24, "total": 72, "total_pages": 3, "next_cursor": "…"}}
"""

import pandas as pd

from ml_assets.upstream.paged_api import PagedApi

PATH = "/v1/weather/hourly"


class WeatherApi(PagedApi):
    """The API serving ``rows`` (the weather table as shipped: every value as text) at ``url``
    (port 0: a free one) with ``token``, in a thread while it is entered."""

    def __init__(self, rows: pd.DataFrame, url: str, token: str, rate_limit: float) -> None:
        super().__init__(rows, "time_hour", PATH, url, token, rate_limit)
