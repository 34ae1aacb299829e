"""The ``rest`` source kind against the weather provider's API, as the flights publisher serves
it (``ml-assets publish flights --to rest``: the real hourly weather, paged, behind a bearer
token and a rate limit): the weather read from the API gives the same clean and feature
partitions as the landed files, row for row; the declared rate is never exceeded; a burst of
429s, intermittent 500s, a page that times out and a page of broken JSON each end as declared,
counted from the API's own request log."""

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pytest
from source_worlds import REST_WEATHER, World, loaded_worlds, switched_declaration

from ml_assets import cli, pipelines
from ml_assets.contract.declaration import RestSource
from ml_assets.data.sources import rest
from ml_assets.data.sources.rest import retry_after_seconds
from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.publish import WEATHER_API_RATE, day_keys, source_table
from ml_assets.pipelines.flights.weather_api import WeatherApi
from ml_assets.platform import code_location
from resources.rest_connection import rest_connection

pytestmark = pytest.mark.integration

DAYS = day_keys(date(2013, 1, 1), date(2013, 1, 3))
SPARE_DAYS = ["2013-01-04", "2013-01-05", "2013-01-06"]
"""Published by the API, loaded by no world: a failed load must leave them unwritten."""
TOKEN = "test-token-7f3a"
WEATHER_REST = {
    **REST_WEATHER,
    "max_retries": 3,
    "backoff_seconds": 0.05,
    "max_backoff_seconds": 2,
    "timeout_seconds": 2,
}
"""The weather read from the API, with short waits to keep the tests fast."""
PAGES = 3
"""A day's weather: up to 3 stations x 24 hours (some hours missing), 24 records a page."""
JITTER_S = 0.1
"""How much the time between two requests' arrivals may differ from the time between their
sending (the client spaces what it sends; the API stamps arrivals, on a busy machine)."""


def weather_rows(day: str) -> int:
    weather = source_table(config.WEATHER_SOURCE)
    when = date.fromisoformat(day)
    return int(
        (
            (weather["year"] == str(when.year))
            & (weather["month"] == str(when.month))
            & (weather["day"] == str(when.day))
        ).sum()
    )


@pytest.fixture(scope="module")
def api() -> Iterator[WeatherApi]:
    """The weather provider's API, serving the days of the worlds and the spare days, and the
    environment that names it (``ML_ASSETS_REST_WEATHER_API_URL``, ``..._TOKEN``)."""
    publish_to_api = pipelines.load("flights").publish_to_api
    assert publish_to_api is not None
    served = publish_to_api(lambda name: ("http://127.0.0.1:0", TOKEN), [*DAYS, *SPARE_DAYS])
    with served as api, pytest.MonkeyPatch.context() as patch:
        patch.setenv("ML_ASSETS_REST_WEATHER_API_URL", api.url)
        patch.setenv("ML_ASSETS_REST_WEATHER_API_TOKEN", TOKEN)
        yield api


@pytest.fixture(scope="module")
def worlds(api: WeatherApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The same days loaded twice: from the landed files, and with the weather from the API;
    ``load_log`` is what the API saw of the second load."""
    with contextlib.ExitStack() as stack:
        loaded = loaded_worlds(stack, tmp_path_factory, "rest", {"weather": WEATHER_REST}, DAYS)
        loaded["load_log"] = list(api.log)
        yield loaded


@pytest.fixture(autouse=True)
def clean_api(api: WeatherApi) -> None:
    """Each test starts with the API's faults off and its log empty."""
    api.reset()


def load_raw(
    world: World, days: str | list[str], raise_on_error: bool = True, **changes: Any
) -> dg.ExecuteInProcessResult:
    """Materialize ``raw_weather`` of ``days`` (one run) in ``world``'s home, the weather
    source declared with ``changes``."""
    declaration = switched_declaration({"weather": {**WEATHER_REST, **changes}})
    variant = World(world.home, world.instance, declaration)
    keys = [days] if isinstance(days, str) else days
    return variant.materialize([variant.key("raw_weather")], keys, raise_on_error)


def read_figures(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = result.get_asset_materialization_events()
    return {name: value.value for name, value in event.materialization.metadata.items()}


def failure(result: dg.ExecuteInProcessResult) -> str:
    """The failed step's error, its causes included."""
    (event,) = result.get_step_failure_events()
    error, text = event.step_failure_data.error, []
    while error is not None:
        text.append(error.message)
        error = error.cause
    return " / ".join(text)


def gaps(log: list) -> list[float]:
    return [later.at - earlier.at for earlier, later in itertools.pairwise(log)]


def within_rate(log: list, per_second: float) -> bool:
    """Whether any run of requests in ``log`` took at least 1/rate a request to arrive (less
    the arrival jitter): no second held more than the rate."""
    return all(
        log[j].at - log[i].at >= (j - i) / per_second - JITTER_S
        for i in range(len(log))
        for j in range(i + 1, len(log))
    )


def test_the_api_gives_the_same_clean_and_feature_rows_as_the_files(worlds: dict) -> None:
    files, rest = worlds["files"], worlds["rest"]
    for day in DAYS:
        for asset, key in (
            ("weather_clean", ["origin", "time_hour"]),
            ("flight_features", ["flight_id"]),
        ):
            expected = files.stored(asset, day).sort_values(key, ignore_index=True)
            assert len(expected) >= 72 if asset == "weather_clean" else len(expected) > 500
            stored = rest.stored(asset, day).sort_values(key, ignore_index=True)
            pd.testing.assert_frame_equal(stored, expected, obj=f"{asset} {day}")
        rejected = files.stored("weather_rejected", day)
        pd.testing.assert_frame_equal(rest.stored("weather_rejected", day), rejected)
    raw = rest.stored("raw_weather", DAYS[0])
    assert raw.columns.tolist()[:15] == list(config.WEATHER_COLUMNS)


def test_every_raw_materialization_says_what_was_read_and_never_the_token(worlds: dict) -> None:
    rest = worlds["rest"]
    key = rest.key("raw_weather")
    observed = rest.instance.fetch_observations(key, limit=10).records
    per_day = {r.partition_key: r.asset_observation.metadata for r in observed}
    assert sorted(per_day) == DAYS
    for day, metadata in per_day.items():
        figures = {name: value.value for name, value in metadata.items()}
        rows = weather_rows(day)
        assert figures["source/rows_read"] == figures["source/rows_in_raw"] == rows > 60
        assert len(rest.stored("raw_weather", day)) == rows
        assert figures["source/pages"] == figures["source/requests"] == PAGES
        assert figures["source/retries"] == figures["source/throttled"] == 0
        assert figures["source/window"].startswith(f"[{day}T00:00:00-05:00, ")
    event = rest.instance.get_latest_materialization_event(key).asset_materialization
    metadata = {name: value.value for name, value in event.metadata.items()}
    assert metadata["source/kind"] == "rest"
    assert metadata["source/connection"] == "weather_api"
    assert metadata["source/path"] == "/v1/weather/hourly"
    assert metadata["source/paginator"] == "page_number"
    assert (
        metadata["source/rows_read"]
        == metadata["source/rows_in_raw"]
        == sum(weather_rows(day) for day in DAYS)
    )
    assert metadata["source/pages"] == 3 * PAGES
    assert metadata["source/schema"]["temp"] == "double"
    assert metadata["source/schema"]["origin"] == "text"
    assert metadata["source/schema"]["year"] == "bigint"
    assert metadata["source/seconds"] > 0
    assert TOKEN not in str(event.metadata) and "127.0.0.1" not in str(event.metadata)


def test_the_declared_rate_is_never_exceeded(worlds: dict, api: WeatherApi) -> None:
    """However many requests of the load, and of a load at a slower declared rate (5 a second,
    12 records a page), reached the API in a row, they took at least their share of a second
    each (less the arrival jitter); none was refused 429."""
    load_log = worlds["load_log"]
    assert len(load_log) == 3 * PAGES and {r.status for r in load_log} == {200}
    assert within_rate(load_log, 20)
    figures = read_figures(
        load_raw(worlds["rest"], DAYS[0], rate_limit_per_second=5, params={"per_page": 12})
    )
    assert figures["source/pages"] == figures["source/requests"] == len(api.log) == 6
    assert {r.status for r in api.log} == {200} and figures["source/throttled"] == 0
    assert within_rate(api.log, 5)
    assert api.log[-1].at - api.log[0].at >= 5 / 5 - JITTER_S


def test_past_the_apis_limit_the_load_waits_as_it_says(worlds: dict, api: WeatherApi) -> None:
    """A declared rate above the API's (which allows 3 a second today; 9 pages) empties its
    bucket: it answers 429 with Retry-After, the load sends nothing before that has passed
    and completes, every 429 counted as a retry."""
    api.faults.rate_limit = 3
    result = load_raw(worlds["rest"], DAYS[1], rate_limit_per_second=1000, params={"per_page": 8})
    figures = read_figures(result)
    throttled = [r for r in api.log if r.status == 429]
    assert len(throttled) == figures["source/throttled"] == figures["source/retries"] > 0
    assert figures["source/pages"] == 9 == len(api.log) - len(throttled)
    for refused in throttled:  # nothing sent again before Retry-After (1 s) passed
        after = [r for r in api.log if r.at > refused.at]
        assert after[0].at - refused.at >= 1 - JITTER_S
    assert len(worlds["rest"].stored("raw_weather", DAYS[1])) == weather_rows(DAYS[1]) == 72
    assert WEATHER_API_RATE == 25


def test_a_burst_of_429s_is_waited_out_as_retry_after_says(worlds: dict, api: WeatherApi) -> None:
    rest = worlds["rest"]
    before = rest.stored("raw_weather", DAYS[1])
    api.faults.throttle_next, api.faults.retry_after = 2, 1
    figures = read_figures(load_raw(rest, DAYS[1]))
    assert [r.status for r in api.log] == [429, 429, 200, 200, 200]
    assert [r.page for r in api.log] == [1, 1, 1, 2, 3]
    assert min(gaps(api.log)[:2]) >= 1 - JITTER_S
    assert figures["source/throttled"] == figures["source/retries"] == 2
    assert figures["source/requests"] == 5 and figures["source/pages"] == PAGES
    pd.testing.assert_frame_equal(rest.stored("raw_weather", DAYS[1]), before)


def test_intermittent_500s_are_retried_and_the_partition_is_complete(
    worlds: dict, api: WeatherApi
) -> None:
    rest = worlds["rest"]
    before = rest.stored("raw_weather", DAYS[2])
    api.faults.fail_every = 2
    figures = read_figures(load_raw(rest, DAYS[2]))
    assert [(r.page, r.status) for r in api.log] == [
        (1, 200), (2, 500), (2, 200), (3, 500), (3, 200),
    ]  # fmt: skip
    assert figures["source/server_errors"] == figures["source/retries"] == 2
    assert figures["source/rows_read"] == figures["source/rows_in_raw"] == weather_rows(DAYS[2])
    pd.testing.assert_frame_equal(rest.stored("raw_weather", DAYS[2]), before)


def test_a_page_that_times_out_is_retried(worlds: dict, api: WeatherApi) -> None:
    rest = worlds["rest"]
    before = rest.stored("raw_weather", DAYS[0])
    api.faults.stall_pages, api.faults.stall_seconds = {2: 1}, 2.0
    figures = read_figures(load_raw(rest, DAYS[0], timeout_seconds=1))
    assert [(r.page, r.status) for r in api.log] == [(1, 200), (2, 0), (2, 200), (3, 200)]
    assert gaps(api.log)[1] >= 1 - JITTER_S  # the client waited its timeout
    assert figures["source/timeouts"] == figures["source/retries"] == 1
    pd.testing.assert_frame_equal(rest.stored("raw_weather", DAYS[0]), before)


def test_retries_end_at_the_declared_bound(worlds: dict, api: WeatherApi) -> None:
    """Every answer a 500: the request is sent 1 + max_retries times, then the run fails naming
    the page, and nothing of the day is written."""
    rest = worlds["rest"]
    api.faults.fail_every = 1
    result = load_raw(rest, SPARE_DAYS[2], raise_on_error=False, max_retries=2)
    assert not result.success
    assert [(r.page, r.status) for r in api.log] == [(1, 500)] * 3
    message = failure(result)
    assert "weather: page 1 of /v1/weather/hourly?" in message
    assert "after 3 requests" in message and "500 Server Error" in message
    assert not rest.path("raw_weather", SPARE_DAYS[2]).exists()


def test_a_page_of_broken_json_fails_naming_it_then_the_next_run_loads_the_day_once(
    worlds: dict, api: WeatherApi
) -> None:
    """Two days in one run, page 2 of the second broken JSON: the run fails naming that page,
    the first day written whole, nothing of the second; the next run loads the second whole,
    once."""
    rest = worlds["rest"]
    first, second = SPARE_DAYS[:2]
    api.faults.malformed_requests = {PAGES + 2}
    result = load_raw(rest, [first, second], raise_on_error=False)
    assert not result.success
    message = failure(result)
    assert "weather: page 2 of /v1/weather/hourly?" in message and "page=2" in message
    assert f"start={second}T" in message and "the answer is not JSON" in message
    assert [r.page for r in api.log] == [1, 2, 3, 1, 2]  # not retried
    assert len(rest.stored("raw_weather", first)) == weather_rows(first) > 60
    assert not rest.path("raw_weather", second).exists()  # nothing of the day written
    api.reset()
    figures = read_figures(load_raw(rest, second))
    raw = rest.stored("raw_weather", second)
    assert len(raw) == figures["source/rows_read"] == weather_rows(second) > 60
    assert not raw.duplicated(["origin", "time_hour"]).any()
    assert [r.page for r in api.log] == [1, 2, 3]


@pytest.mark.parametrize(
    "paginator",
    [
        {"type": "page_number"},  # no total: the first empty page ends
        {"type": "offset", "limit": 24, "total_path": "meta.total"},
        {"type": "cursor", "cursor_path": "meta.next_cursor"},
        {"type": "link_header"},
    ],
    ids=lambda p: p["type"],
)
def test_every_paginator_reads_the_same_rows(
    worlds: dict, api: WeatherApi, paginator: dict
) -> None:
    rest = worlds["rest"]
    before = rest.stored("raw_weather", DAYS[1])
    figures = read_figures(load_raw(rest, DAYS[1], paginator=paginator))
    pd.testing.assert_frame_equal(rest.stored("raw_weather", DAYS[1]), before)
    ends_empty = paginator == {"type": "page_number"}
    assert figures["source/pages"] == len(api.log) == PAGES + ends_empty


def test_a_token_from_a_secret_file_and_a_wrong_one(
    worlds: dict, api: WeatherApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token may come from a secret file; a wrong token is refused (401) once, never
    retried, and fails the run without showing it."""
    rest = worlds["rest"]
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    monkeypatch.delenv("ML_ASSETS_REST_WEATHER_API_TOKEN")
    monkeypatch.setenv("ML_ASSETS_REST_WEATHER_API_TOKEN_FILE", str(secret))
    assert load_raw(rest, DAYS[0]).success
    secret.write_text("wrong-token")
    api.reset()
    result = load_raw(rest, DAYS[0], raise_on_error=False)
    assert not result.success
    assert [r.status for r in api.log] == [401]
    assert "401 Client Error" in failure(result) and "wrong-token" not in failure(result)


def test_the_platform_wiring(worlds: dict) -> None:
    """The code location loads with a rest source: one connection resource per API, the
    source's pool, and no landing sensor watching it."""
    rest = worlds["rest"]
    pipeline = pipelines.load("flights")
    definitions = code_location(
        [
            type(pipeline)(
                declaration=rest.declaration,
                source_file=pipeline.source_file,
                data_assets=rest.assets,
                feature_schema=pipeline.feature_schema,
                publish=pipeline.publish,
            )
        ]
    )
    dg.Definitions.validate_loadable(definitions)
    assert "rest_weather_api" in definitions.resources
    graph = definitions.resolve_asset_graph()
    sensor = definitions.resolve_sensor_def("flights_landing_zone_sensor")
    watched = sensor.asset_selection.resolve(graph)
    assert rest.key("raw_flights") in watched and rest.key("raw_weather") not in watched
    assert graph.get(rest.key("raw_weather")).pools == {"rest_weather_api"}


def test_a_reference_table_is_read_whole(api: WeatherApi) -> None:
    """A source declared ``partitioned: false`` is every page of its path (here a day's
    weather, its window in fixed params), typed as the JSON gives it, and checked."""
    source = RestSource.model_validate(
        {
            **WEATHER_REST,
            "name": "weather_day",
            "description": "The weather of one day, as a table.",
            "partitioned": False,
            "window_params": None,
            "params": {
                "per_page": 30,
                "start": "2013-01-02T00:00-05:00",
                "end": "2013-01-03T00:00-05:00",
            },
        }
    )
    schema = pa.DataFrameSchema({"origin": pa.Column(str), "temp": pa.Column(float)})
    table = rest.asset(pipelines.declaration("flights"), source, schema)
    result = dg.materialize([table], resources={"rest_weather_api": rest_connection("weather_api")})
    frame = result.asset_value(table.key)
    assert len(frame) == weather_rows("2013-01-02") == 72
    assert frame["temp"].dtype == float and frame["year"].dtype == "int64"
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    figures = read_figures(result)
    assert figures["source/pages"] == len(api.log) == 3 and figures["source/rows_read"] == 72


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("0.5", 0.5), (None, 0.0), ("-3", 0.0), ("inf", 0.0), ("soon", 0.0)],
)
def test_retry_after_in_seconds(header: str | None, seconds: float) -> None:
    assert retry_after_seconds(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert 28 < retry_after_seconds(format_datetime(later, usegmt=True)) <= 30


def test_the_publisher_serves_the_api_until_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ml-assets publish flights --to rest`` serves the days' weather at the connection's URL
    with its token (the secret file's) and stops cleanly on SIGTERM; without a token it says
    what to set."""
    secret = tmp_path / "token"
    secret.write_text(TOKEN)
    env = {
        **os.environ,
        "ML_ASSETS_REST_WEATHER_API_URL": "http://127.0.0.1:0",
        "ML_ASSETS_REST_WEATHER_API_TOKEN_FILE": str(secret),
    }
    env.pop("ML_ASSETS_REST_WEATHER_API_TOKEN", None)
    command = [sys.executable, "-m", "ml_assets.cli", "publish", "flights", "--to", "rest"]
    days = ["--start", DAYS[0], "--end", DAYS[0]]
    with subprocess.Popen([*command, *days], env=env, stdout=subprocess.PIPE, text=True) as served:
        try:
            line = served.stdout.readline()  # type: ignore[union-attr]
            url = re.search(r"at (http://127\.0\.0\.1:\d+);", line).group(1)  # type: ignore[union-attr]
            query = "start=2013-01-01T00:00:00-05:00&end=2013-01-02T00:00:00-05:00&per_page=100"
            request = urllib.request.Request(
                f"{url}/v1/weather/hourly?{query}", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                page = json.load(answer)
            assert len(page["data"]) == page["meta"]["total"] == weather_rows(DAYS[0])
        finally:
            served.send_signal(signal.SIGTERM)
        assert served.wait(timeout=20) == 0
    monkeypatch.delenv("ML_ASSETS_REST_WEATHER_API_TOKEN", raising=False)
    with pytest.raises(SystemExit, match=r"set ML_ASSETS_REST_WEATHER_API_URL .* and "
                       r"ML_ASSETS_REST_WEATHER_API_TOKEN \(or ..._TOKEN_FILE\)"):  # fmt: skip
        cli.main(["publish", "flights", "--to", "rest", *days])
