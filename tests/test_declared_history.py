"""A pipeline with declared history needs no Dagster code: a small synthetic daily pipeline
(its clean rows, then the generic ``features_asset``) materialized over a range in one run and
partition by partition gives the same feature partitions, equal to the pure reference, and
each partition reads only its declared window. Mistakes in the ``features:`` section fail at
load with the file, the key and the reason."""

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
import yaml
from conftest import platform_test_instance
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START

from ml_assets.contract.features import Features
from ml_assets.contract.loading import DeclarationError, load_declaration
from ml_assets.contract.pipeline import Pipeline
from ml_assets.data.data_layers import partitioned
from ml_assets.data.features_asset import features_asset
from ml_assets.data.metadata import table_definition_metadata
from ml_assets.data.time_features import time_features
from resources.parquet_io_manager import ParquetIOManager
from resources.partition_frames import PartitionStream

pytestmark = pytest.mark.unit

DAYS = pd.date_range("2022-01-01", "2022-01-31", freq="D")
STATIONS = ("north", "south")
HISTORY_DAYS = 14
BY_PARTITION = 8
"""The last days, also materialized one partition per run (the gap days 20 and 27 among them)."""
EXPANDING = "rides_expanding_mean_by_station"
FEATURES = {
    "input": "rides_clean",
    "history": {"rides_clean": {"days": HISTORY_DAYS}},
    "time": {"column": "day", "steps": "days"},
    "lags": [{"column": "rides", "periods": [7, 14], "by": "station"}],
    "rolling": [{"column": "rides", "window": 7, "stats": ["mean", "max"], "by": "station"}],
    "expanding": [{"column": "rides", "stats": ["mean"], "by": "station"}],
    "calendar": ["dayofweek", "weekend"],
    "holidays": {"country": "US", "subdivision": "IL"},
}
DECLARATION: dict[str, Any] = {
    "name": "rides",
    "description": "Daily rides at two stations (synthetic).",
    "partitions": {"kind": "daily", "start": "2022-01-01", "end": "2022-02-01"},
    "sources": [{"name": "rides", "description": "Daily rides per station."}],
    "features": FEATURES,
    "model": {
        "registered_model_name": "rides",
        "task": "regression",
        "features_asset": "ride_features",
        "target": "rides",
        "id_column": "row_id",
        "categorical": ["station"],
        "numeric": ["rides_lag_7_by_station", "dayofweek"],
        "baseline": {"kind": "column", "column": "rides_lag_7_by_station"},
        "training": {
            "window_start": "2022-01-15",
            "window_end": "2022-01-31",
            "validation_partitions": 3,
            "test_partitions": 3,
        },
        "tuning": {"n_trials": 2, "sample_rows": 100, "timeout_seconds": 60, "workers": 1},
        "acceptance": {"min_improvement_over_baseline": 0.0},
        "search_space": [{"family": "ridge", "alpha": {"type": "float", "low": 0.1, "high": 1}}],
    },
    "serving": {
        "port": 8799,
        "prediction": "rides",
        "requests_asset": "rides_clean",
        "request_fields": [{"name": "station", "type": "str", "description": "The station."}],
        "warm_up": [{"station": "north"}],
    },
    "deploy": {"tolerance": 0.01},
}
CLEAN = pa.DataFrameSchema(
    {
        "row_id": pa.Column(str),
        "station": pa.Column(str),
        "day": pa.Column("datetime64[ns]"),
        "rides": pa.Column(float, nullable=True),
    },
    name="rides_clean",
)
OUTPUTS = [
    "rides_lag_7_by_station", "rides_lag_14_by_station", "rides_mean_7_by_station",
    "rides_max_7_by_station", "rides_expanding_mean_by_station", "dayofweek", "weekend", "holiday",
]  # fmt: skip
SCHEMA = pa.DataFrameSchema(
    {
        "row_id": pa.Column(str),
        "station": pa.Column(str),
        "rides": pa.Column(float, nullable=True),
        "history_rows": pa.Column(int),
        **{name: pa.Column(nullable=True) for name in OUTPUTS},
    },
    name="ride_features",
    strict=True,
)


def all_rows() -> pd.DataFrame:
    """Every station's rides of January; the south station reports nothing on some days."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        [(s, d) for d in DAYS for s in STATIONS], columns=["station", "day"]
    ).assign(rides=rng.integers(100, 1000, len(DAYS) * len(STATIONS)).astype(float))
    frame = frame[~((frame["station"] == "south") & frame["day"].dt.day.isin([3, 9, 10, 20]))]
    frame["row_id"] = frame["station"] + "-" + frame["day"].dt.strftime("%Y-%m-%d")
    return frame[["row_id", "station", "day", "rides"]].reset_index(drop=True)


def _declare(path: Path, change: Callable[[dict], Any] = lambda d: None) -> Path:
    data = copy.deepcopy(DECLARATION)
    change(data)
    path.write_text(yaml.safe_dump(data))
    return path


def _assets(path: Path, received: dict[str, list[pd.Timestamp]]) -> list[dg.AssetsDefinition]:
    """The synthetic pipeline: its clean rows (a stand-in for the generic ingest and clean
    layers) and the generic features asset; ``received`` records the history days each
    partition's feature function was handed."""
    declaration = load_declaration(path)
    rows = all_rows()

    @dg.asset(
        name="rides_clean",
        key_prefix=declaration.prefix,
        metadata=table_definition_metadata(CLEAN),
        **partitioned(declaration),
    )
    def rides_clean(context: dg.AssetExecutionContext) -> PartitionStream:
        return PartitionStream(
            context.partition_keys, lambda key: rows[rows["day"] == pd.Timestamp(key)]
        )

    def feature_frame(rows: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
        received[rows["day"].iloc[0].date().isoformat()] = sorted(set(history["day"]))
        return rows.drop(columns="day").assign(history_rows=len(history))

    features = features_asset(declaration, "rides_clean", feature_frame, SCHEMA, "Ride features.")
    return [rides_clean, features]


def _stored(home: Path, keys: list[str]) -> pd.DataFrame:
    folder = home / "warehouse" / "rides" / "ride_features"
    return pd.concat(
        [pd.read_parquet(folder / f"{key}.parquet") for key in keys], ignore_index=True
    )


def _expanding_reference(rows: pd.DataFrame, declared: Features) -> pd.Series:
    """An expanding window sees what its partition read: each day's value over the declared
    history and the day itself."""
    values = []
    for day in DAYS:
        window = rows[(rows["day"] >= day - pd.Timedelta(days=HISTORY_DAYS)) & (rows["day"] <= day)]
        features = time_features(window.reset_index(drop=True), declared)
        values.append(features[window["day"].to_numpy() == day][EXPANDING])
    return pd.concat(values, ignore_index=True)


@pytest.mark.slow
def test_one_run_and_partition_by_partition_agree_with_the_reference(
    tmp_path: Path, home: Path
) -> None:
    path = _declare(tmp_path / "pipeline.yaml")
    resources = {"io_manager": ParquetIOManager(base_url=str(home / "warehouse"))}
    keys = [day.date().isoformat() for day in DAYS]
    received: dict[str, list[pd.Timestamp]] = {}
    assets = _assets(path, received)
    whole_range = {RANGE_START: keys[0], RANGE_END: keys[-1]}
    with platform_test_instance() as instance:
        clean = dg.materialize(assets[:1], tags=whole_range, resources=resources, instance=instance)
        assert clean.success
        one_run = dg.materialize(
            assets, selection=[assets[1].key], tags=whole_range, resources=resources,
            instance=instance,
        )  # fmt: skip
        assert one_run.success
        in_one_run = _stored(home, keys)
        for key in keys[-BY_PARTITION:]:
            assert dg.materialize(
                assets,
                selection=[assets[1].key],
                partition_key=key,
                resources=resources,
                instance=instance,
            ).success
        checks = one_run.get_asset_check_evaluations()
    assert len(checks) == len(keys) and all(check.passed for check in checks)
    pd.testing.assert_frame_equal(
        _stored(home, keys[-BY_PARTITION:]),
        in_one_run[in_one_run["row_id"].str[-10:] >= keys[-BY_PARTITION]].reset_index(drop=True),
    )

    rows = all_rows()
    declared = load_declaration(path).features
    reference = pd.concat([rows, time_features(rows, declared)], axis=1)
    windowed = [name for name in OUTPUTS if name != EXPANDING]
    pd.testing.assert_frame_equal(
        in_one_run[["row_id", *windowed]], reference[["row_id", *windowed]], check_dtype=False
    )
    pd.testing.assert_series_equal(
        in_one_run[EXPANDING], _expanding_reference(rows, declared), check_dtype=False
    )
    # a missing day is missing: the 7-day lag of the south station on the 17th and 27th
    south = in_one_run.set_index("row_id")["rides_lag_7_by_station"]
    assert np.isnan(south["south-2022-01-17"]) and np.isnan(south["south-2022-01-27"])
    # each partition was handed only its declared window: the 14 days before it
    for key, days in received.items():
        first = pd.Timestamp(key) - pd.Timedelta(days=HISTORY_DAYS)
        assert days == [d for d in pd.date_range(first, periods=HISTORY_DAYS) if d >= DAYS[0]]


def test_the_features_asset_reads_the_declared_window(tmp_path: Path) -> None:
    features = _assets(_declare(tmp_path / "pipeline.yaml"), {})[1]
    mapping = features.get_partition_mapping(dg.AssetKey(["rides", "rides_clean"]))
    assert mapping == dg.TimeWindowPartitionMapping(
        start_offset=-HISTORY_DAYS, end_offset=0, allow_nonexistent_upstream_partitions=True
    )


def test_the_features_asset_links_to_the_pipelines_feature_function(tmp_path: Path) -> None:
    """``dagster/code_references`` on the built asset points at the function it was given (the
    pipeline's code), not at the factory."""
    features = _assets(_declare(tmp_path / "pipeline.yaml"), {})[1]
    spec = next(iter(features.specs))
    [reference] = spec.metadata["dagster/code_references"].code_references
    assert isinstance(reference, dg.LocalFileCodeReference)
    assert Path(reference.file_path) == Path(__file__)
    assert reference.label.endswith("._assets.<locals>.feature_frame")
    line = Path(__file__).read_text().splitlines()[reference.line_number - 1]
    assert line.strip().startswith("def feature_frame("), line


def test_a_monthly_history_in_days_reads_the_months_that_cover_it(tmp_path: Path) -> None:
    def monthly(d: dict) -> None:
        d["partitions"].update(kind="monthly", end="2022-06-01")
        d["features"]["history"]["rides_clean"] = {"days": 35}

    declared = load_declaration(_declare(tmp_path / "pipeline.yaml", monthly))
    assert declared.features.history_partitions("rides_clean", "monthly") == 2
    assert declared.partitions.previous_keys("2022-03-01", 2) == ["2022-01-01", "2022-02-01"]


def _set(section: str, value: object) -> Callable[[dict], None]:
    return lambda d: d["features"].update({section: value})


MISTAKES = {
    "negative history": (
        _set("history", {"rides_clean": {"days": -7}}),
        "features.history.rides_clean.days",
        "greater than or equal to 0",
    ),
    "history both ways": (
        _set("history", {"rides_clean": {"days": 7, "partitions": 7}}),
        "features.history.rides_clean",
        "give partitions or days, not both or neither",
    ),
    "negative lag": (
        _set("lags", [{"column": "rides", "periods": [-7]}]),
        "features.lags.0.periods",
        "periods must be at least 1",
    ),
    "negative window": (
        _set("rolling", [{"column": "rides", "window": -3, "stats": ["mean"]}]),
        "features.rolling.0.window",
        "greater than or equal to 1",
    ),
    "unknown statistic": (
        _set("expanding", [{"column": "rides", "stats": ["median"]}]),
        "features.expanding.0.stats.0",
        "Input should be 'mean', 'sum', 'min', 'max' or 'std'",
    ),
    "history shorter than a lag": (
        _set("history", {"rides_clean": {"days": 7}}),
        "<top level>",
        "features: rides_lag_14_by_station reads 14 days back but the history of rides_clean "
        "covers 7",
    ),
    "no time column": (
        lambda d: d["features"].pop("time"),
        "features",
        "declare time.column",
    ),
    "unknown holiday calendar": (
        _set("holidays", {"country": "XX"}),
        "features.holidays",
        "no holiday calendar for country 'XX'",
    ),
    "same output twice": (
        _set("lags", [{"column": "rides", "periods": [7, 7]}]),
        "features",
        "time feature outputs named more than once: rides_lag_7",
    ),
    "history of another input": (
        lambda d: d["features"]["history"].update(weather_clean={"days": 1}),
        "features",
        "history: only the history of the input (rides_clean) is read, not of weather_clean",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_features_mistake_fails_at_load(tmp_path: Path, mistake: str) -> None:
    change, where, reason = MISTAKES[mistake]
    path = _declare(tmp_path / "pipeline.yaml", change)
    with pytest.raises(DeclarationError) as error:
        load_declaration(path)
    assert str(error.value).startswith(f"{path}: invalid pipeline declaration")
    assert f"  {where}: " in str(error.value)
    assert reason in str(error.value)


def _pipeline(path: Path, schema: pa.DataFrameSchema = SCHEMA) -> Pipeline:
    return Pipeline(
        declaration=load_declaration(path),
        source_file=path,
        data_assets=_assets(path, {}),
        feature_schema=schema,
        publish=lambda landing, keys, fault=None: [],
    )


def test_the_synthetic_pipeline_loads(tmp_path: Path) -> None:
    assert _pipeline(_declare(tmp_path / "pipeline.yaml")).name == "rides"


@pytest.mark.parametrize(
    ("change", "schema", "reason"),
    [
        (
            lambda d: d["features"]["lags"].append({"column": "riders", "periods": [7]}),
            SCHEMA.add_columns({"riders_lag_7": pa.Column(float)}),
            "'riders' not among the columns of rides_clean",
        ),
        (
            lambda d: d["features"]["lags"].append({"column": "rides", "periods": [1]}),
            SCHEMA,
            "the time features 'rides_lag_1' are not among the columns of ride_features "
            "(ride_features)",
        ),
    ],
)
def test_features_the_assets_cannot_give_fail_at_load(
    tmp_path: Path, change: Callable[[dict], Any], schema: pa.DataFrameSchema, reason: str
) -> None:
    path = _declare(tmp_path / "pipeline.yaml", change)
    with pytest.raises(DeclarationError) as error:
        _pipeline(path, schema)
    assert str(error.value) == f"{path}: features: {reason}"


def _rows_only(rows: pd.DataFrame) -> pd.DataFrame:
    return rows


def _with_weather(rows: pd.DataFrame, history: pd.DataFrame, weather: pd.DataFrame) -> pd.DataFrame:
    return rows


@pytest.mark.parametrize(
    ("change", "function", "reason"),
    [
        (
            lambda d: None,
            _with_weather,
            "rides: _with_weather takes weather: it is handed rows, history and features.reads "
            "(none) by parameter name",
        ),
        (
            lambda d: d["features"].update(reads=["weather_clean"]),
            _rows_only,
            "rides: _rows_only does not take weather_clean",
        ),
        (
            lambda d: d["features"].update(history={}, lags=[], rolling=[], expanding=[]),
            lambda rows, history: rows,
            "rides: <lambda> takes history but features.history declares none",
        ),
    ],
)
def test_a_feature_function_that_does_not_take_what_is_declared_fails_at_load(
    tmp_path: Path, change: Callable[[dict], Any], function: Callable, reason: str
) -> None:
    """The function is handed its inputs by parameter name: ``rows``, ``history`` (when one is
    declared) and exactly the declared ``features.reads``."""
    declaration = load_declaration(_declare(tmp_path / "pipeline.yaml", change))
    with pytest.raises(ValueError) as error:
        features_asset(declaration, "rides_clean", function, SCHEMA, "Ride features.")
    assert str(error.value) == reason
