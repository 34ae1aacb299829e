"""The taxi pipeline's data layers on the real trips: publish, raw → clean → features, faults."""

from collections import Counter
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.requests import parse_item, request_model
from ml_assets.data.clean_and_rejected import EXPORT_SCHEMA, ROWS_CONSERVED
from ml_assets.data.cleaning import PARSE_ERROR, RAW_TEXT, REJECTION_RULE
from ml_assets.data.features_asset import FEATURE_SCHEMA
from ml_assets.data.sources.ingest import LANDED_FILE_SCHEMA
from ml_assets.pipelines.taxi import publish as publisher
from ml_assets.pipelines.taxi.cleaning import DAYS, clean_trips
from ml_assets.pipelines.taxi.cleaning import MONTHS as MONTH_NAMES
from ml_assets.pipelines.taxi.definitions import PIPELINE
from ml_assets.pipelines.taxi.features import FEATURE_COLUMNS, REQUEST_COLUMNS
from ml_assets.pipelines.taxi.publish import FAULTS, publish
from ml_assets.pipelines.taxi.schemas import TRIPS_CLEAN
from ml_assets.pipelines.taxi.serving import HOOKS
from resources.landing_zone import LandingZone

pytestmark = pytest.mark.unit

DECLARATION = PIPELINE.declaration
TRIPS_BY_MONTH = {"2022-01-01": 1644, "2022-02-01": 2036, "2022-03-01": 3142, "2022-04-01": 3178}
"""Trips per month in modeldata's taxi: 10,000 in all."""
MONTHS = list(TRIPS_BY_MONTH)
FAULTY_MONTH = "2022-02-01"
RAW, CLEAN, REJECTED, FEATURES = (
    asset_key(DECLARATION, name)
    for name in ("raw_trips", "trips_clean", "trips_rejected", "trip_features")
)


def materialize_month(
    month: str, resources: dict, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """Materialize the month's data layers as landed."""
    return dg.materialize(
        PIPELINE.data_assets,
        partition_key=month,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def land_fault(
    fault: str, landing_zone: LandingZone, resources: dict, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """Land ``fault`` in the faulty month, then materialize that month's data layers."""
    publish(landing_zone, [FAULTY_MONTH], fault=fault)
    return materialize_month(FAULTY_MONTH, resources, instance)


def stored(home: Path, asset: str, month: str) -> pd.DataFrame:
    return pd.read_parquet(home / "warehouse" / "taxi" / asset / f"{month}.parquet")


def materialized(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {event.asset_key for event in result.get_asset_materialization_events()}


def checks(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str, str], bool]:
    """Whether each (asset, check, partition) evaluated in the run passed."""
    return {
        (e.asset_key.path[-1], e.check_name, str(e.partition)): e.passed
        for e in result.get_asset_check_evaluations()
    }


def request_features(clean: pd.DataFrame) -> pd.DataFrame:
    """Features of ``clean`` trips computed as the service does: request items, validated."""
    model = request_model(DECLARATION)
    items = [parse_item(model, item) for item in HOOKS.request_items(clean)]
    return pd.DataFrame(HOOKS.columns(None, items))


def test_publisher_lands_the_real_months_as_exported(landing_zone: LandingZone) -> None:
    uris = publish(landing_zone, MONTHS)

    assert [Path(uri).name for uri in uris] == [f"{month}.parquet" for month in MONTHS]
    frames = {m: pd.read_parquet(landing_zone.uri("trips", m, ".parquet")) for m in MONTHS}
    assert {m: len(f) for m, f in frames.items()} == TRIPS_BY_MONTH
    schema = pq.read_schema(landing_zone.uri("trips", MONTHS[0], ".parquet"))
    assert schema.names == DECLARATION.source("trips").columns  # no index, nothing added
    trip_ids = pd.concat(frames.values())["trip_id"]
    assert trip_ids.is_unique
    assert sorted(trip_ids) == list(range(1, 10_001))
    with pytest.raises(ValueError, match="unknown fault 'fire'"):
        publish(landing_zone, MONTHS, fault="fire")
    with pytest.raises(ValueError, match="no trips for 2022-05-01"):
        publish(landing_zone, ["2022-05-01"])


def test_four_real_months_end_to_end(
    landing_zone: LandingZone, resources: dict, instance: dg.DagsterInstance, home: Path
) -> None:
    publish(landing_zone, MONTHS)

    result = dg.materialize(
        PIPELINE.data_assets,
        tags={
            "dagster/asset_partition_range_start": MONTHS[0],
            "dagster/asset_partition_range_end": MONTHS[-1],
        },
        resources=resources,
        instance=instance,
    )

    assert result.success
    evaluated = checks(result)
    # two raw, four clean (schema, rows conserved, export schema, rejected share), one feature
    # check a month
    assert len(evaluated) == 7 * len(MONTHS)
    assert all(evaluated.values())
    rules: Counter[str] = Counter()
    for month, trips in TRIPS_BY_MONTH.items():
        clean, rejected = stored(home, "trips_clean", month), stored(home, "trips_rejected", month)
        assert len(stored(home, "raw_trips", month)) == trips == len(clean) + len(rejected)
        rules.update(rejected[REJECTION_RULE])
        features = stored(home, "trip_features", month)
        assert features["trip_id"].tolist() == clean["trip_id"].tolist()
        assert features["tip"].tolist() == clean["tip"].astype(int).tolist()
        served = request_features(clean).astype(features.dtypes[list(FEATURE_COLUMNS)])
        pd.testing.assert_frame_equal(features[list(FEATURE_COLUMNS)], served, check_exact=True)
    assert rules == Counter()  # the real export breaks no rule
    assert sum(len(stored(home, "trip_features", m)) for m in MONTHS) == 10_000

    march = {a: stored(home, a, "2022-03-01") for a in ("trips_clean", "trip_features")}
    again = dg.materialize(
        PIPELINE.data_assets,
        partition_key="2022-03-01",
        resources=resources,
        instance=instance,
    )
    assert again.success
    assert materialized(again) == {RAW, CLEAN, REJECTED, FEATURES}
    for asset, frame in march.items():  # re-materializing a month replaces it with the same
        pd.testing.assert_frame_equal(stored(home, asset, "2022-03-01"), frame)


@pytest.mark.parametrize(
    ("fault", "rules", "clean_rows"),
    [
        ("duplicate-rows", ["duplicate"] * 5, TRIPS_BY_MONTH[FAULTY_MONTH]),
        (
            "out-of-range",
            ["out_of_range:distance"] * 3 + ["out_of_range:hour"] * 3,
            TRIPS_BY_MONTH[FAULTY_MONTH] - 6,
        ),
    ],
)
def test_faults_end_in_rejected_rows_with_their_rule(
    fault: str,
    rules: list[str],
    clean_rows: int,
    landing_zone: LandingZone,
    resources: dict,
    instance: dg.DagsterInstance,
    home: Path,
) -> None:
    result = land_fault(fault, landing_zone, resources, instance)

    assert result.success
    raw = stored(home, "raw_trips", FAULTY_MONTH)
    clean = stored(home, "trips_clean", FAULTY_MONTH)
    rejected = stored(home, "trips_rejected", FAULTY_MONTH)
    assert rejected[REJECTION_RULE].tolist() == rules
    assert len(raw) == len(clean) + len(rejected)
    assert len(clean) == clean_rows
    assert len(stored(home, "trip_features", FAULTY_MONTH)) == len(clean)
    assert checks(result)[("trips_clean", ROWS_CONSERVED, FAULTY_MONTH)]
    assert checks(result)[("trip_features", FEATURE_SCHEMA, FAULTY_MONTH)]


@pytest.mark.parametrize(
    ("fault", "rejected_rules"),
    [
        ("corrupt-file", {"corrupt_line": 1}),
        ("missing-column", {"missing_column:tip": TRIPS_BY_MONTH[FAULTY_MONTH]}),
        ("empty-file", {}),
    ],
)
def test_unreadable_exports_fail_the_blocking_check_and_stop_downstream(
    fault: str,
    rejected_rules: dict[str, int],
    landing_zone: LandingZone,
    resources: dict,
    instance: dg.DagsterInstance,
    home: Path,
) -> None:
    result = land_fault(fault, landing_zone, resources, instance)

    assert not result.success
    assert checks(result)[("raw_trips", LANDED_FILE_SCHEMA, FAULTY_MONTH)] is False
    assert materialized(result) == {RAW}
    assert not (home / "warehouse" / "taxi" / "trips_clean").exists()

    # Cleaned anyway (a person overriding the check), nothing is lost: each row has its rule.
    forced = dg.materialize(
        PIPELINE.data_assets,
        selection=[CLEAN, REJECTED],
        partition_key=FAULTY_MONTH,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    rejected = stored(home, "trips_rejected", FAULTY_MONTH)
    assert dict(Counter(rejected[REJECTION_RULE])) == rejected_rules
    assert stored(home, "trips_clean", FAULTY_MONTH).empty
    assert checks(forced)[("trips_clean", ROWS_CONSERVED, FAULTY_MONTH)]
    # one rule rejecting every row of a month is a changed export: a blocking failure
    whole_file = fault == "missing-column"
    assert checks(forced)[("trips_clean", EXPORT_SCHEMA, FAULTY_MONTH)] is not whole_file
    assert forced.success is not whole_file


GOOD_TRIP = {"trip_id": "1", "tip": "yes", "distance": "2.5", "company": "Sun Taxi",
             "local": "no", "dow": "Mon", "month": "Jan", "hour": "8"}  # fmt: skip
UNREADABLE = {**dict.fromkeys(GOOD_TRIP), PARSE_ERROR: "unreadable parquet file: ArrowInvalid"}


def _raw(rows: list[dict[str, str | None]]) -> pd.DataFrame:
    """Raw trips as ``parse_landed`` gives them: text, plus the unread-row columns."""
    return pd.DataFrame(
        [{**GOOD_TRIP, PARSE_ERROR: None, RAW_TEXT: None, **row} for row in rows], dtype="string"
    )


def test_clean_trips_rejects_each_row_with_the_first_rule_it_breaks() -> None:
    cases = [
        ({"trip_id": "1"}, None),
        ({"trip_id": "2", "tip": "no", "local": "yes", "distance": "0.0", "hour": "23"}, None),
        ({"trip_id": "3", "distance": "far"}, "unparseable:distance"),
        ({"trip_id": "4", "company": None}, "missing_value:company"),
        ({"trip_id": "5", "distance": "250"}, "out_of_range:distance"),
        ({"trip_id": "6", "hour": "24"}, "out_of_range:hour"),
        ({"trip_id": "7", "hour": "7.5"}, "not_whole:hour"),
        ({"trip_id": "8", "tip": "maybe"}, "unknown_code:tip"),
        ({"trip_id": "9", "local": "Y"}, "unknown_code:local"),
        ({"trip_id": "10", "dow": "Monday"}, "unknown_code:dow"),
        ({"trip_id": "11", "month": "January"}, "unknown_code:month"),
        ({"trip_id": "12", "month": "Feb"}, "wrong_partition"),
        ({"trip_id": "1", "tip": "no"}, "duplicate"),
        ({"trip_id": "13", "distance": "far", "tip": "maybe"}, "unparseable:distance"),
        ({"trip_id": "14", "month": "Feb", "hour": "25"}, "out_of_range:hour"),
        (UNREADABLE, "corrupt_line"),
    ]
    raw = _raw([row for row, _ in cases])

    result = clean_trips(raw, date(2022, 1, 1), {})

    assert result.rejected[REJECTION_RULE].tolist() == [rule for _, rule in cases if rule]
    assert result.clean["trip_id"].tolist() == ["1", "2"]
    assert result.kept_raw_rows + len(result.rejected) == len(raw)
    TRIPS_CLEAN.validate(result.clean)
    assert result.clean[["tip", "local"]].to_numpy().tolist() == [[True, False], [False, True]]
    assert result.clean["hour"].tolist() == [8, 23]


def test_clean_trips_rejects_every_row_of_a_file_without_a_declared_column() -> None:
    raw = _raw([{"trip_id": "1"}, {"trip_id": "2"}]).drop(columns="hour")

    result = clean_trips(raw, date(2022, 1, 1), {})

    assert result.clean.empty
    assert result.rejected[REJECTION_RULE].tolist() == ["missing_column:hour"] * 2
    TRIPS_CLEAN.validate(result.clean)


def test_service_inputs_follow_the_declaration_and_the_cleaning_rules() -> None:
    fields = {f.name: f for f in DECLARATION.serving.request_fields}
    assert tuple(fields) == REQUEST_COLUMNS
    assert tuple(fields["dow"].rules(DECLARATION)["choices"]) == DAYS  # the cleaner's domain
    assert set(PIPELINE.faults) == set(FAULTS) == {
        "duplicate-rows", "corrupt-file", "missing-column", "out-of-range", "empty-file",
    }  # fmt: skip
    model = request_model(DECLARATION)
    warm_up = HOOKS.columns(None, [parse_item(model, i) for i in DECLARATION.serving.warm_up])
    for column in DECLARATION.model.numeric:
        assert np.isfinite(warm_up[column]).all()
    assert warm_up["distance"].tolist() == [float(np.float32(17.19)), 0.0]
    with pytest.raises(ValueError, match="less than or equal to 23"):
        parse_item(model, {**DECLARATION.serving.warm_up[0], "hour": 24})


def land_month(landing_zone: LandingZone, month: str, frame: pd.DataFrame) -> None:
    """Land ``frame`` as the month's export, the way the publisher writes one."""
    landing_zone.write_bytes("trips", month, publisher._parquet(frame), ".parquet")


def month_of_trips(month: str) -> pd.DataFrame:
    table = publisher.trips()
    return table[table["month"] == MONTH_NAMES[date.fromisoformat(month).month - 1]].reset_index(
        drop=True
    )


def observed_rejections(result: dg.ExecuteInProcessResult, month: str) -> dict:
    """The numbers recorded for the month's rejected rows, plotted over partitions."""
    (observation,) = [
        event.asset_observation_data.asset_observation
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
        and event.asset_observation_data.asset_observation.partition == month
    ]
    return {name: value.value for name, value in observation.metadata.items()}


def test_an_integer_id_exported_as_float_keeps_its_identity(
    landing_zone: LandingZone, resources: dict, instance: dg.DagsterInstance, home: Path
) -> None:
    """One trip without an id makes the export store ``trip_id`` as floating point: raw keeps
    what landed (``8.0``), clean and features give ``8``, the id requests and outcomes use. A
    company holding a NUL is rejected as ``control_character:company``; both new rules are
    counted in the month's rejections."""
    month = MONTHS[0]
    frame = month_of_trips(month)
    ids = frame["trip_id"].astype(str).tolist()
    frame["trip_id"] = frame["trip_id"].astype("float64")
    frame.loc[0, "trip_id"] = np.nan
    frame.loc[1, "company"] = "Taxi\x00Affiliation Services"
    land_month(landing_zone, month, frame)

    result = materialize_month(month, resources, instance)

    assert result.success
    assert stored(home, "raw_trips", month)["trip_id"].iloc[2] == f"{ids[2]}.0"
    clean = stored(home, "trips_clean", month)
    assert clean["trip_id"].tolist() == ids[2:]
    assert stored(home, "trip_features", month)["trip_id"].tolist() == ids[2:]
    rejected = stored(home, "trips_rejected", month)
    assert rejected[REJECTION_RULE].tolist() == [
        "missing_value:trip_id",
        "control_character:company",
    ]
    assert rejected["company"].iloc[1] == "Taxi\x00Affiliation Services"  # as landed
    observed = observed_rejections(result, month)
    assert observed["rejected/control_character:company"] == 1
    assert observed["rejected/missing_value:trip_id"] == 1


def test_a_whole_month_in_another_format_fails_and_stops_downstream(
    landing_zone: LandingZone, resources: dict, instance: dg.DagsterInstance, home: Path
) -> None:
    """Every distance exported as text with its unit (``2.5 mi``): the blocking
    ``export_schema`` check fails naming the column and the rule, and no features are made
    from the empty month; every row is still accounted for, and plotted."""
    frame = month_of_trips(FAULTY_MONTH)
    frame["distance"] = frame["distance"].map("{} mi".format)
    land_month(landing_zone, FAULTY_MONTH, frame)

    result = materialize_month(FAULTY_MONTH, resources, instance)

    assert not result.success
    assert materialized(result) == {RAW, CLEAN, REJECTED}
    trips_in_month = TRIPS_BY_MONTH[FAULTY_MONTH]
    export = next(e for e in result.get_asset_check_evaluations() if e.check_name == EXPORT_SCHEMA)
    assert not export.passed and export.partition == FAULTY_MONTH
    assert export.description.startswith(
        f"column distance: unparseable rejected {trips_in_month} of {trips_in_month} raw rows"
    )
    assert checks(result)[("trips_clean", ROWS_CONSERVED, FAULTY_MONTH)]
    observed = observed_rejections(result, FAULTY_MONTH)
    assert observed["rejected/unparseable:distance"] == trips_in_month
    assert observed["largest_rule_share"] == 1.0
