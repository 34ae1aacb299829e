"""Plausibility rules (issue 25.4): a route's distance in kilometres among miles, a station in
Celsius among stations in Fahrenheit, a taxi company in kilometres; judged against the
accepted history (the stored clean partitions, or those the run produced before) and the
partition's peers; reported per partition where the rejection plots read them."""

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START

from ml_assets.data.cleaning import REJECTION_RULE, parse_landed_csv, parse_landed_parquet
from ml_assets.data.plausibility import NO_HISTORY, Accepted, AcceptedHistory
from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.assets import data_assets, key
from ml_assets.pipelines.flights.cleaning import clean_flights, clean_weather
from ml_assets.pipelines.flights.publish import publish, reference_tables, source_table
from ml_assets.pipelines.taxi.cleaning import TRIPS, clean_trips
from ml_assets.pipelines.taxi.publish import trips
from resources.landing_zone import LandingZone

pytestmark = pytest.mark.unit

REFERENCES = reference_tables()
DAY = date(2013, 1, 8)
KM_PER_MILE = 1.609344


def landed(source: str, day: date) -> pd.DataFrame:
    table = source_table(source)
    rows = table[
        (table["year"] == str(day.year))
        & (table["month"] == str(day.month))
        & (table["day"] == str(day.day))
    ]
    return rows.reset_index(drop=True)


def parsed(rows: pd.DataFrame) -> pd.DataFrame:
    return parse_landed_csv(rows.to_csv(index=False).encode())


def in_km(rows: pd.DataFrame, where: pd.Series) -> pd.DataFrame:
    """``rows`` with the distance of ``where`` in whole kilometres, as such an export writes it."""
    changed = rows.copy()
    miles = changed.loc[where, "distance"].astype(float)
    changed.loc[where, "distance"] = (miles * KM_PER_MILE).round().astype(int).astype(str)
    return changed


def in_celsius(rows: pd.DataFrame, station: str) -> pd.DataFrame:
    changed = rows.copy()
    at = changed["origin"] == station
    for column in ("temp", "dewp"):
        fahrenheit = pd.to_numeric(changed.loc[at, column], errors="coerce")
        changed.loc[at, column] = ((fahrenheit - 32) * 5 / 9).round(2).astype(str)
    return changed


def accepted(clean, rules, days: list[date]) -> Accepted:
    """The accepted history of ``days`` (real, cleaned in order)."""
    history = AcceptedHistory(rules, lambda key: None)
    for day in days:
        history.add(day.isoformat(), clean(parsed(landed(rules.name, day)), day, REFERENCES).clean)
    return history.before([day.isoformat() for day in days])


@pytest.fixture(scope="module")
def week_of_flights() -> Accepted:
    return accepted(
        clean_flights, config.FLIGHTS, [DAY - timedelta(days=n) for n in range(7, 0, -1)]
    )


@pytest.fixture(scope="module")
def week_of_weather() -> Accepted:
    return accepted(
        clean_weather, config.WEATHER, [DAY - timedelta(days=n) for n in range(7, 0, -1)]
    )


def route(rows: pd.DataFrame, origin: str = "JFK", dest: str = "LAX") -> pd.Series:
    return (rows["origin"] == origin) & (rows["dest"] == dest)


def test_rows_of_a_route_in_kilometres_among_miles_are_rejected_alone() -> None:
    rows = landed("flights", DAY)
    on_route = route(rows)
    some = on_route & (on_route.cumsum() <= 4)

    result = clean_flights(parsed(in_km(rows, some)), DAY, REFERENCES)

    rejected = result.rejected
    assert rejected[REJECTION_RULE].tolist() == ["inconsistent:distance"] * 4
    assert set(rejected["distance"]) == {"3983"}
    kept = result.clean[route(result.clean)]
    assert len(kept) == on_route.sum() - 4 and set(kept["distance"]) == {2475}
    assert len(result.clean) + len(rejected) == len(rows)
    (judgement,) = [j for j in result.plausibility if j.rule == "inconsistent:distance"]
    assert judgement.rows == 4 and "JFK/LAX: 3983 (expected 2475)" in judgement.detail


def test_a_route_only_in_kilometres_is_rejected_against_its_accepted_history(
    week_of_flights: Accepted,
) -> None:
    rows = landed("flights", DAY)
    damaged = parsed(in_km(rows, route(rows)))

    alone = clean_flights(damaged, DAY, REFERENCES, NO_HISTORY)
    judged = clean_flights(damaged, DAY, REFERENCES, week_of_flights)

    # the day alone cannot tell: every row of the route agrees with the others
    assert alone.rejected.empty
    assert judged.rejected[REJECTION_RULE].tolist() == ["inconsistent:distance"] * route(rows).sum()
    assert len(judged.clean) == len(rows) - route(rows).sum()
    (judgement,) = judged.plausibility
    assert "against 7 accepted partitions" in judgement.basis


def test_real_days_lose_no_row_to_a_plausibility_rule(
    week_of_flights: Accepted, week_of_weather: Accepted
) -> None:
    flights = clean_flights(parsed(landed("flights", DAY)), DAY, REFERENCES, week_of_flights)
    weather = clean_weather(parsed(landed("weather", DAY)), DAY, REFERENCES, week_of_weather)

    assert [j.rows for j in (*flights.plausibility, *weather.plausibility)] == [0, 0]
    assert flights.rejected.empty and weather.rejected.empty


def test_a_station_in_celsius_is_rejected_as_a_group(week_of_weather: Accepted) -> None:
    rows = in_celsius(landed("weather", DAY), "JFK")

    result = clean_weather(parsed(rows), DAY, REFERENCES, week_of_weather)

    assert result.rejected[REJECTION_RULE].unique().tolist() == ["group_shift:temp"]
    assert set(result.rejected["origin"]) == {"JFK"}
    assert len(result.rejected) == (rows["origin"] == "JFK").sum()
    clean = result.clean.set_index("origin")
    assert clean.loc["JFK", "temp"].isna().all() and clean.loc["JFK", "imputed"].all()
    assert clean.loc[["EWR", "LGA"], "temp"].gt(0).all()
    (judgement,) = result.plausibility
    assert "3 group(s) against its history among its peers" in judgement.basis
    assert judgement.detail.startswith("JFK: median")


def test_the_first_day_judges_a_station_against_its_peers_only() -> None:
    first = date(2013, 1, 1)
    real = clean_weather(parsed(landed("weather", first)), first, REFERENCES)
    damaged = clean_weather(parsed(in_celsius(landed("weather", first), "LGA")), first, REFERENCES)

    assert real.rejected.empty
    assert set(damaged.rejected["origin"]) == {"LGA"}
    assert damaged.plausibility[0].basis == "3 group(s) against its peers only (no history)"


def test_a_taxi_company_in_kilometres_is_flagged_and_kept() -> None:
    table = trips()
    months = {
        n: table[table["month"] == name] for n, name in enumerate(["Jan", "Feb", "Mar", "Apr"], 1)
    }
    history = AcceptedHistory(TRIPS, lambda key: None)
    for n in (1, 2, 3):
        month = date(2022, n, 1)
        history.add(
            str(month), clean_trips(parse_landed_parquet(months[n].to_parquet()), month, {}).clean
        )
    april = months[4].copy()
    sun = april["company"] == "Sun Taxi"
    april.loc[sun, "distance"] = april.loc[sun, "distance"] * KM_PER_MILE
    earlier = history.before(["2022-01-01", "2022-02-01", "2022-03-01"])

    real = clean_trips(parse_landed_parquet(months[4].to_parquet()), date(2022, 4, 1), {}, earlier)
    result = clean_trips(parse_landed_parquet(april.to_parquet()), date(2022, 4, 1), {}, earlier)

    assert not real.clean["group_shift_distance"].any()
    assert result.rejected.empty and len(result.clean) == len(april)
    flagged = result.clean.set_index("company")["group_shift_distance"]
    assert flagged["Sun Taxi"].all() and not flagged.drop("Sun Taxi").any()
    assert result.notes["flagged:group_shift:distance"] == sun.sum()


# through Dagster: the accepted history is the run's earlier days, or the stored ones


WEATHER = [key("raw_weather"), key("weather_clean"), key("weather_rejected")]


def plausibility_observed(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """The numbers each partition's rejections recorded for the plots, by partition."""
    return {
        event.asset_observation_data.asset_observation.partition: {
            name: value.value
            for name, value in event.asset_observation_data.asset_observation.metadata.items()
        }
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    }


@pytest.mark.slow
def test_the_clean_asset_judges_a_day_against_the_days_accepted_before_it(
    landing_zone: LandingZone, resources: dict, instance: dg.DagsterInstance, home: Path
) -> None:
    """A range run judges its last day against the days it cleaned before; a run of that day
    alone, against the same days as stored. Either way the day's rejection counts (the plotted
    numbers) name the rule, 0 on the days it found nothing."""
    days = ["2013-01-01", "2013-01-02", "2013-01-03"]
    publish(landing_zone, days)
    celsius = in_celsius(landed("weather", date(2013, 1, 3)), "JFK")
    landing_zone.write_bytes("weather", days[-1], celsius.to_csv(index=False).encode())
    assert dg.materialize(
        data_assets, selection=[key(t) for t in config.REFERENCE_TABLES], resources=resources,
        instance=instance,
    ).success  # fmt: skip

    in_range = dg.materialize(
        data_assets, selection=WEATHER, resources=resources, instance=instance,
        tags={RANGE_START: days[0], RANGE_END: days[-1]},
    )  # fmt: skip
    alone = dg.materialize(
        data_assets, selection=WEATHER, resources=resources, instance=instance,
        partition_key=days[-1],
    )  # fmt: skip

    jfk_rows = int((celsius["origin"] == "JFK").sum())
    ranged, single = plausibility_observed(in_range), plausibility_observed(alone)
    assert [ranged[day]["rejected/group_shift:temp"] for day in days] == [0, 0, jfk_rows]
    assert single[days[-1]]["rejected/group_shift:temp"] == jfk_rows
    assert "history 2013-01-01…2013-01-02, 2 partitions" in single[days[-1]]["plausibility"]
    assert "no accepted history" in ranged[days[0]]["plausibility"]
    stored = pd.read_parquet(
        home / "warehouse" / "flights" / "weather_rejected" / f"{days[-1]}.parquet"
    )
    assert set(stored[REJECTION_RULE]) == {"group_shift:temp"} and len(stored) == jfk_rows
    (clean,) = [
        m for m in alone.get_asset_materialization_events()
        if m.asset_key == key("weather_clean")
    ]  # fmt: skip
    summary = clean.materialization.metadata["plausibility"].value
    assert "group_shift:temp" in summary and "JFK: median" in summary


def test_a_clean_function_that_cannot_take_the_history_fails_at_load() -> None:
    from ml_assets.data.clean_and_rejected import clean_assets
    from ml_assets.pipelines.flights import schemas

    def clean_without_history(raw: pd.DataFrame, day: date, references: dict) -> None: ...

    with pytest.raises(TypeError, match=r"must take \(raw, day, references, history\)"):
        clean_assets(
            config.DECLARATION, config.WEATHER_SOURCE, clean_without_history,
            schemas.WEATHER_CLEAN, schemas.WEATHER_REJECTED, "Weather.",
        )  # fmt: skip
