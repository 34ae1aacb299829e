"""Flight features: trailing statistics without leakage, calendar, plane and weather joins."""

import functools
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_assets.data.cleaning import parse_landed_csv
from ml_assets.pipelines.flights import config, schemas
from ml_assets.pipelines.flights.assets import data_assets, key
from ml_assets.pipelines.flights.cleaning import clean_flights, clean_weather
from ml_assets.pipelines.flights.features import (
    CARRIER,
    ROUTE,
    TARGET,
    FeatureLookups,
    _local_to_utc_ns,
    build_features,
    lookup_tables,
    trailing_stats,
)
from ml_assets.pipelines.flights.publish import day_keys, publish, reference_tables, source_table
from resources.landing_zone import LandingZone
from resources.table_snapshots import TableSnapshots

pytestmark = pytest.mark.unit

REFERENCES = reference_tables()

DAY = date(2013, 1, 8)
STATS = [f"{p}_{s}" for p in ("route", "carrier") for s in ("flights_7d", "arr_delay_mean_7d")]


def _landed(source: str, day: date) -> pd.DataFrame:
    table = source_table(source)
    on_day = (
        (table["year"] == str(day.year))
        & (table["month"] == str(day.month))
        & (table["day"] == str(day.day))
    )
    return parse_landed_csv(table[on_day].to_csv(index=False).encode())


@functools.cache
def flights_on(day: date) -> pd.DataFrame:
    return clean_flights(_landed("flights", day), day, REFERENCES).clean


@functools.cache
def weather_on(day: date) -> pd.DataFrame:
    return clean_weather(_landed("weather", day), day, REFERENCES).clean


def planes() -> pd.DataFrame:
    """The planes reference table, read the way the ``planes`` asset reads it."""
    return REFERENCES["planes"]


def history_before(day: date) -> pd.DataFrame:
    days = [day - timedelta(days=n) for n in range(config.TRAILING_DAYS, 0, -1)]
    return pd.concat([flights_on(d) for d in days if d.year == 2013], ignore_index=True)


def features_for(flights: pd.DataFrame, history: pd.DataFrame, day: date = DAY) -> pd.DataFrame:
    return build_features(
        flights,
        weather_on(day),
        planes(),
        trailing_stats(history, ROUTE, "route"),
        trailing_stats(history, CARRIER, "carrier"),
    )


def flight(**overrides: object) -> pd.DataFrame:
    """One scheduled flight as the serving app sends it: plain Python values, no target."""
    values = {
        "year": 2013, "month": 7, "day": 4, "sched_dep_time": 1530, "sched_arr_time": 1845,
        "carrier": "AA", "flight": 177, "tailnum": "N336AA", "origin": "JFK", "dest": "SFO",
        "distance": 2586,
    }  # fmt: skip
    return pd.DataFrame([{**values, **overrides}])


def no_stats() -> tuple[pd.DataFrame, pd.DataFrame]:
    empty = flights_on(DAY).iloc[:0]
    return trailing_stats(empty, ROUTE, "route"), trailing_stats(empty, CARRIER, "carrier")


# trailing_stats


def test_trailing_stats_by_hand() -> None:
    history = pd.DataFrame(
        {
            "origin": ["JFK", "JFK", "JFK", "JFK", "LGA"],
            "dest": ["LAX", "LAX", "LAX", "LAX", "ORD"],
            "carrier": ["AA", "AA", "UA", "UA", "UA"],
            TARGET: [10.0, 20.0, np.nan, 40.0, -5.0],
            "cancelled": [False, False, True, False, False],
        }
    )
    route = trailing_stats(history, ROUTE, "route").set_index(list(ROUTE))
    carrier = trailing_stats(history, CARRIER, "carrier").set_index("carrier")

    jfk_lax = route.loc[("JFK", "LAX")]
    assert jfk_lax["route_flights_7d"] == 4
    assert jfk_lax["route_arr_delay_mean_7d"] == pytest.approx((10 + 20 + 40) / 3)
    assert jfk_lax["route_delayed_share_7d"] == pytest.approx(2 / 4)  # 20 and 40 > 15
    assert jfk_lax["route_cancelled_share_7d"] == pytest.approx(1 / 4)
    assert route.loc[("LGA", "ORD"), "route_delayed_share_7d"] == 0
    assert carrier.loc["UA", "carrier_flights_7d"] == 3
    assert carrier.loc["UA", "carrier_arr_delay_mean_7d"] == pytest.approx((40 - 5) / 2)
    assert carrier.loc["AA", "carrier_cancelled_share_7d"] == 0
    assert len(route) == 2
    assert len(carrier) == 2


def test_trailing_stats_of_no_history_is_empty_with_columns() -> None:
    stats = trailing_stats(flights_on(DAY).iloc[:0], ROUTE, "route")

    assert stats.empty
    assert list(stats.columns) == [
        "origin", "dest", "route_flights_7d", "route_arr_delay_mean_7d",
        "route_delayed_share_7d", "route_cancelled_share_7d",
    ]  # fmt: skip


# leakage


def test_features_read_the_declared_week_and_the_snapshot_only_the_week_before(
    resources: dict,
) -> None:
    """The declared history (``features.history``) is the 7 days before a day: the features
    asset reads them and the day itself, the online snapshot only the days before (its function
    takes no ``rows``); the declared reads are the same day's weather and the whole plane table."""
    graph = dg.Definitions(assets=data_assets, resources=resources).resolve_asset_graph()
    week = -config.TRAILING_DAYS

    for asset, end in (("flight_features", 0), ("online_features", -1)):
        mapping = graph.get_partition_mapping(key(asset), key("flights_clean"))
        assert mapping == dg.TimeWindowPartitionMapping(
            start_offset=week, end_offset=end, allow_nonexistent_upstream_partitions=True
        )
        assert graph.get_partition_mapping(key(asset), key("weather_clean")) == (
            dg.TimeWindowPartitionMapping(start_offset=0, end_offset=0)
        )
        assert isinstance(
            graph.get_partition_mapping(key(asset), key("planes")), dg.AllPartitionMapping
        )
        assert set(graph.get(key(asset)).parent_keys) == {
            key("flights_clean"), key("weather_clean"), key("planes")
        }  # fmt: skip


def test_features_do_not_depend_on_the_days_own_outcomes() -> None:
    """Rewriting the day's delays and cancellations changes the target and nothing else."""
    today = flights_on(DAY)
    history = history_before(DAY)
    before = features_for(today, history)
    rewritten = today.assign(arr_delay=today[TARGET] + 500, cancelled=~today["cancelled"])
    after = features_for(rewritten, history)

    features = before.columns.drop(TARGET)
    pd.testing.assert_frame_equal(before[features], after[features])
    assert (after[TARGET] - before[TARGET]).dropna().eq(500).all()


def test_features_do_depend_on_the_history_passed() -> None:
    """The counterpart of the leakage test: the stats do come from the history."""
    today = flights_on(DAY)
    history = history_before(DAY)
    before = features_for(today, history)
    after = features_for(today, history.assign(arr_delay=history[TARGET] + 100))

    assert np.allclose(
        after["route_arr_delay_mean_7d"] - before["route_arr_delay_mean_7d"], 100, equal_nan=True
    )
    pd.testing.assert_series_equal(before["route_flights_7d"], after["route_flights_7d"])


def test_route_stats_of_a_real_flight_by_hand() -> None:
    today = flights_on(DAY)
    history = history_before(DAY)
    features = features_for(today, history)
    row = features.iloc[0]
    same_route = history[(history["origin"] == row["origin"]) & (history["dest"] == row["dest"])]

    assert len(same_route) > 0
    assert row["route_flights_7d"] == len(same_route)
    assert row["route_arr_delay_mean_7d"] == pytest.approx(same_route[TARGET].mean())
    assert row["route_cancelled_share_7d"] == pytest.approx(same_route["cancelled"].mean())
    same_carrier = history[history["carrier"] == row["carrier"]]
    assert row["carrier_flights_7d"] == len(same_carrier)


# joins and calendar


def test_unknown_plane_and_route_give_missing_values() -> None:
    history = history_before(DAY)
    known = flights_on(DAY).iloc[[0]]
    unknown = known.assign(tailnum="NOPLANE", dest="XYZ", carrier="ZZ")
    features = features_for(pd.concat([known, unknown], ignore_index=True), history)

    assert features.loc[0, ["plane_age", "plane_seats"]].notna().all()
    assert features.loc[0, "route_flights_7d"] > 0
    row = features.iloc[1]
    assert row[["plane_age", "plane_seats", "plane_engines"]].isna().all()
    assert row["route_flights_7d"] == 0
    assert row["carrier_flights_7d"] == 0
    assert row[["route_arr_delay_mean_7d", "route_delayed_share_7d"]].isna().all()
    assert row[["carrier_arr_delay_mean_7d", "carrier_cancelled_share_7d"]].isna().all()


@pytest.mark.parametrize(
    ("day", "is_holiday", "days_to_holiday"),
    [
        (date(2013, 7, 4), 1, 0),
        (date(2013, 7, 6), 0, 2),
        (date(2013, 7, 1), 0, 3),
        (date(2013, 12, 31), 0, 1),  # New Year's Day 2014
        (date(2013, 1, 1), 1, 0),
    ],
)
def test_holiday_flags(day: date, is_holiday: int, days_to_holiday: int) -> None:
    route, carrier = no_stats()
    one = flight(year=day.year, month=day.month, day=day.day)
    features = build_features(one, weather_on(DAY).iloc[:0], planes(), route, carrier)

    assert features.loc[0, "is_holiday"] == is_holiday
    assert features.loc[0, "days_to_holiday"] == days_to_holiday


def test_calendar_and_schedule_features() -> None:
    """A red-eye: 23:59 departure arriving 04:42 the next morning."""
    route, carrier = no_stats()
    one = flight(year=2013, month=1, day=2, sched_dep_time=2359, sched_arr_time=442)
    row = build_features(one, weather_on(DAY).iloc[:0], planes(), route, carrier).iloc[0]

    assert row["flight_id"] == "2013-01-02/AA177/JFK/2359"
    assert row["dep_hour"] == 23
    assert row["dep_minute_of_day"] == 23 * 60 + 59
    assert row["arr_hour"] == 4
    assert row["scheduled_minutes"] == 4 * 60 + 42 + 1
    assert row["weekday"] == 2  # a Wednesday
    assert row["day_of_year"] == 2
    assert row["scheduled_departure"] == pd.Timestamp("2013-01-02 23:59", tz=config.TIMEZONE)
    assert row["time_hour"] == pd.Timestamp("2013-01-03 04:00", tz="UTC")


def test_plane_age_from_the_reference_table() -> None:
    route, carrier = no_stats()
    known = planes().set_index("tailnum").loc["N336AA"]
    row = build_features(flight(), weather_on(DAY).iloc[:0], planes(), route, carrier).iloc[0]

    assert row["plane_age"] == 2013 - known["year"]
    assert row["plane_seats"] == known["seats"]
    assert row["plane_engines"] == known["engines"]


@pytest.mark.parametrize(
    ("day", "utc"),
    [(date(2013, 1, 8), "2013-01-08T20:00:00Z"), (date(2013, 7, 4), "2013-07-04T19:00:00Z")],
    ids=["EST", "EDT"],
)
def test_weather_joined_at_the_departure_hour_in_utc(day: date, utc: str) -> None:
    """A 15:30 JFK departure reads the JFK reading of 20:00 UTC in winter, 19:00 in summer."""
    route, carrier = no_stats()
    one = flight(year=day.year, month=day.month, day=day.day, sched_dep_time=1530)
    row = build_features(one, weather_on(day), planes(), route, carrier).iloc[0]
    weather = source_table("weather")
    reading = weather[(weather["origin"] == "JFK") & (weather["time_hour"] == utc)]

    assert len(reading) == 1
    assert row["time_hour"] == pd.Timestamp(utc)
    for measure in ("temp", "dewp", "humid", "pressure", "visib"):
        assert row[measure] == pytest.approx(float(reading[measure].iloc[0])), measure
    assert row["weather_imputed"] == 0


def test_weather_join_matches_the_landed_utc_hour_of_every_flight() -> None:
    """For a whole real day, the join hour is the ``time_hour`` the export carries."""
    today = flights_on(DAY)
    features = features_for(today, history_before(DAY))
    weather = weather_on(DAY).set_index(["origin", "time_hour"])

    assert (features["time_hour"] == today["time_hour"]).all()
    expected = weather.loc[list(zip(today["origin"], today["time_hour"], strict=True)), "temp"]
    assert np.allclose(features["temp"], expected.to_numpy())


def test_real_day_conforms_to_the_feature_schema() -> None:
    features = features_for(flights_on(DAY), history_before(DAY))

    schemas.FLIGHT_FEATURES.validate(features, lazy=True)
    assert len(features) == len(flights_on(DAY))
    assert features["flight_id"].is_unique
    assert features["route_flights_7d"].gt(0).mean() > 0.9


def test_single_flight_from_the_serving_app() -> None:
    history = history_before(date(2013, 7, 4))
    row = flight()
    features = build_features(
        row,
        weather_on(date(2013, 7, 4)),
        planes(),
        trailing_stats(history, ROUTE, "route"),
        trailing_stats(history, CARRIER, "carrier"),
    )

    schemas.FLIGHT_FEATURES.validate(features, lazy=True)
    assert len(features) == 1
    assert np.isnan(features.loc[0, TARGET])
    assert features.loc[0, "route_flights_7d"] > 0
    assert features.loc[0, "temp"] == pytest.approx(
        weather_on(date(2013, 7, 4))
        .set_index(["origin", "time_hour"])
        .loc[("JFK", pd.Timestamp("2013-07-04T19:00Z")), "temp"]
    )


# through Dagster


def _features_run(resources: dict, instance: dg.DagsterInstance, home: Path) -> pd.DataFrame:
    result = dg.materialize(
        data_assets,
        selection=[key("flight_features")],
        partition_key="2013-01-03",
        resources=resources,
        instance=instance,
    )
    assert result.success
    stored = home / "warehouse" / "flights" / "flight_features" / "2013-01-03.parquet"
    return pd.read_parquet(stored)


def _range(first: str, last: str) -> dict[str, str]:
    """The tags of a run over the partitions ``first`` … ``last``."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def _cleaned(
    landing_zone: LandingZone, resources: dict, instance: dg.DagsterInstance, last: date
) -> None:
    """The reference tables and the clean days 2013-01-01 … ``last``, through Dagster."""
    publish(landing_zone, day_keys(date(2013, 1, 1), last))
    references = [key("planes"), key("airports"), key("airlines")]
    references_run = dg.materialize(
        data_assets, selection=references, resources=resources, instance=instance
    )
    assert references_run.success
    upstream = dg.materialize(
        data_assets,
        selection=dg.AssetSelection.groups("flights_ingest", "flights_clean")
        - dg.AssetSelection.assets(*references),
        tags=_range("2013-01-01", last.isoformat()),
        resources=resources,
        instance=instance,
    )
    assert upstream.success


def test_feature_asset_ignores_the_days_own_clean_flights(
    landing_zone: LandingZone, resources: dict, instance: dg.DagsterInstance, home: Path
) -> None:
    """Through the asset: rewriting the day's stored delays leaves every feature unchanged."""
    _cleaned(landing_zone, resources, instance, date(2013, 1, 3))
    before = _features_run(resources, instance, home)
    stored = home / "warehouse" / "flights" / "flights_clean" / "2013-01-03.parquet"
    clean = pd.read_parquet(stored)
    clean.assign(arr_delay=clean[TARGET] + 500, cancelled=True).to_parquet(stored, index=False)
    after = _features_run(resources, instance, home)

    features = before.columns.drop(TARGET)
    pd.testing.assert_frame_equal(before[features], after[features])
    assert (after[TARGET] - before[TARGET]).dropna().eq(500).all()
    past = pd.concat(pd.read_parquet(stored.with_name(f"2013-01-0{d}.parquet")) for d in (1, 2))
    per_carrier = before["carrier"].map(past["carrier"].value_counts()).fillna(0)
    assert (before["carrier_flights_7d"] == per_carrier).all()


@pytest.mark.slow
def test_the_assets_equal_the_feature_code_over_the_declared_inputs(
    landing_zone: LandingZone, resources: dict, instance: dg.DagsterInstance, home: Path
) -> None:
    """``flight_features`` and ``online_features`` of each day, built by the generic factories
    in one range run, equal ``FeatureLookups`` and ``lookup_tables`` called directly with the
    day's clean flights, the stored clean flights of the days before (none on the first day),
    the day's clean weather and the plane table."""
    days = day_keys(date(2013, 1, 1), date(2013, 1, 10))
    _cleaned(landing_zone, resources, instance, date(2013, 1, 10))
    run = dg.materialize(
        data_assets,
        selection=[key("flight_features"), key("online_features")],
        tags=_range(days[0], days[-1]),
        resources=resources,
        instance=instance,
    )
    assert run.success
    warehouse = home / "warehouse" / "flights"
    snapshots = TableSnapshots(resources["online_store"].base_url)
    planes = pd.read_parquet(warehouse / "planes.parquet")

    def clean(source: str, day: str) -> pd.DataFrame:
        return pd.read_parquet(warehouse / f"{source}_clean" / f"{day}.parquet")

    for i, day in enumerate(days):
        before = [clean("flights", d) for d in days[max(0, i - config.TRAILING_DAYS) : i]]
        history = pd.concat(before, ignore_index=True) if before else clean("flights", day)[:0]
        tables = lookup_tables(history, clean("weather", day), planes)
        features = pd.read_parquet(warehouse / "flight_features" / f"{day}.parquet")
        expected = FeatureLookups(**tables).frame(clean("flights", day))
        pd.testing.assert_frame_equal(features, expected)
        snapshot = snapshots.read(key("online_features").path, day)
        assert list(snapshot) == list(tables)
        for name, table in tables.items():
            pd.testing.assert_frame_equal(snapshot[name], table.reset_index(drop=True))
    assert len(run.get_asset_check_evaluations()) == len(days)
    assert all(check.passed for check in run.get_asset_check_evaluations())


@pytest.mark.parametrize("day", ["2013-03-10", "2013-11-03", "2013-07-04"])
def test_local_departure_times_convert_to_utc_as_pandas_does(day: str) -> None:
    """Every minute of a DST-change day: skipped times move forward, repeated ones are missing."""
    walls = pd.date_range(day, periods=24 * 60, freq="min")
    expected = walls.tz_localize(config.TIMEZONE, ambiguous="NaT", nonexistent="shift_forward")
    converted = [_local_to_utc_ns(w.year, w.month, w.day, w.hour, w.minute) for w in walls]
    assert converted == expected.tz_convert("UTC").asi8.tolist()
