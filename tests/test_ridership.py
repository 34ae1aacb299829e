"""The ridership pipeline on the real Chicago days: the service computes the declared history
features itself, equal to the batch features on held-out days, from what a caller knows; and on
a replay of the held-out year, season-aware drift raises no warning in a month with nothing
unusual (the whole training set as reference would warn every month)."""

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from conftest import platform_test_instance
from pydantic import ValidationError

from ml_assets import pipelines
from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.names import FEATURE_DRIFT_CHECK
from ml_assets.contract.requests import parse_item
from ml_assets.data.data_layers import CLEAN, FEATURES, INGEST, group
from ml_assets.data.time_features import with_time_features
from ml_assets.definitions import defs
from ml_assets.home import (
    HOME_ENV_VAR,
    LANDING_ENV_VAR,
    ONLINE_STORE_ENV_VAR,
    WAREHOUSE_ENV_VAR,
    online_store_url,
    warehouse_url,
)
from ml_assets.modeling.layer import PARTITION_COLUMN, SPLIT_COLUMN
from ml_assets.monitoring import feature_drift
from ml_assets.pipelines.ridership.cleaning import clean_days
from ml_assets.pipelines.ridership.features import feature_frame
from ml_assets.pipelines.ridership.publish import days
from resources.builder import platform_resources
from resources.landing_zone import default_landing_zone
from resources.parquet_io_manager import read_partition
from resources.table_snapshots import TableSnapshots
from serving.spec import served_model

pytestmark = pytest.mark.unit

DECLARATION = pipelines.declaration("ridership")
HOOKS = pipelines.serving_hooks("ridership")
SERVED = served_model(DECLARATION, HOOKS)
LANDED = ["2001-01-01", "2001-02-01", "2001-03-01", "2001-04-01"]
"""The first months (the data begin on 2001-01-22): a features run reads its history."""
HELD_OUT = LANDED[2:]
"""Months whose features read the month before (their 7- and 14-day lags cross into it)."""
COLUMNS = list(dict.fromkeys([
    SERVED.id_column, *SERVED.features.categorical, *SERVED.features.numeric,
    DECLARATION.model.baseline.column, *DECLARATION.model.compare_with.values(),
]))  # fmt: skip
"""The model's features and the naive predictors' columns."""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Four months landed by the publisher; raw, clean, features and the online snapshot
    materialized in one run, as a range backfill does."""
    home = tmp_path_factory.mktemp("ridership")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(HOME_ENV_VAR, str(home))
        for var in (LANDING_ENV_VAR, WAREHOUSE_ENV_VAR, ONLINE_STORE_ENV_VAR):
            patch.delenv(var, raising=False)
        pipelines.load("ridership").publish(default_landing_zone(), LANDED)
        layers = dg.AssetSelection.groups(
            *(group(DECLARATION, layer) for layer in (INGEST, CLEAN, FEATURES))
        )
        with platform_test_instance() as instance:
            result = dg.materialize(
                list(defs.assets),  # type: ignore[arg-type]
                selection=layers,
                resources=platform_resources([DECLARATION]),
                instance=instance,
                tags={"dagster/asset_partition_range_start": LANDED[0],
                      "dagster/asset_partition_range_end": LANDED[-1]},
            )  # fmt: skip
            assert result.success
        yield home


def _online(partition: str, items: list[dict]) -> pd.DataFrame:
    """The service's features of ``items`` (as a caller sends them) over the snapshot of
    ``partition`` read from the online store, as the service reloads it."""
    snapshot = TableSnapshots(online_store_url()).read(SERVED.snapshot_asset, partition)
    parsed = [parse_item(SERVED.request, item) for item in items]
    columns = SERVED.columns(SERVED.lookups(snapshot), parsed)
    frame = pd.DataFrame({name: columns[name] for name in COLUMNS})
    return frame.astype({SERVED.id_column: "string", "weekday": "string"})


def _batch(partition: str) -> pd.DataFrame:
    return read_partition(warehouse_url(), asset_key(DECLARATION, DECLARATION.model.features_asset),
                          partition)  # fmt: skip


def _requests(partition: str) -> list[dict]:
    clean = read_partition(warehouse_url(), asset_key(DECLARATION, "boardings_clean"), partition)
    return HOOKS.request_items(clean)


@pytest.mark.parametrize("partition", HELD_OUT)
def test_online_history_features_equal_the_batch_features(home: Path, partition: str) -> None:
    """Every day of a month, sent as a caller sends it (date, weather, games: no lag), gets
    exactly its batch features, the lags across the month boundary included."""
    items = _requests(partition)
    assert not {"rides", "rides_lag_7", "rides_mean_7"} & {k for item in items for k in item}
    batch = _batch(partition)
    online = _online(partition, items)
    pd.testing.assert_frame_equal(online, batch[COLUMNS])
    assert batch["rides_lag_14"].notna().all()  # the first days' lags read the month before
    # one day alone gets what it gets among the month's days
    pd.testing.assert_frame_equal(_online(partition, items[5:6]), batch[COLUMNS].iloc[5:6]
                                  .reset_index(drop=True))  # fmt: skip


def test_the_day_after_a_snapshot_gets_its_batch_features(home: Path) -> None:
    """The forecast of the day after the last one landed: a month's snapshot covers the day
    after it, whose lags and 7-day mean it holds, and gives that day's batch features."""
    first, end = SERVED.snapshot_dates(HELD_OUT[0])
    assert (first, end) == (date(2001, 3, 1), date(2001, 4, 2))
    next_month = _requests(HELD_OUT[1])[:1]
    assert next_month[0]["date"] == (end - timedelta(days=1)).isoformat()
    online = _online(HELD_OUT[0], next_month)
    pd.testing.assert_frame_equal(online, _batch(HELD_OUT[1])[COLUMNS].iloc[:1])


def test_a_caller_cannot_send_the_history(home: Path) -> None:
    item = {**_requests(HELD_OUT[0])[0], "rides_lag_7": 15.0}
    with pytest.raises(ValidationError, match="rides_lag_7"):
        parse_item(SERVED.request, item)


# season-aware drift on a replay of the held-out year


@pytest.fixture(scope="module")
def replay() -> pd.DataFrame:
    """Every day's feature row, by month, computed with the pipeline's own code from the
    publisher's exports (cleaned month by month, the declared time features over all days)."""
    exported = days().astype(str)
    months = exported["date"].str[:7] + "-01"
    clean = pd.concat(
        [clean_days(rows, date.fromisoformat(m), {}).clean for m, rows in exported.groupby(months)],
        ignore_index=True,
    )
    features = feature_frame(with_time_features(clean, None, DECLARATION.features))
    return features.assign(**{PARTITION_COLUMN: features[SERVED.id_column].str[:7] + "-01"})


def _drift(replay: pd.DataFrame, monitoring) -> dict[str, dg.AssetCheckEvaluation]:
    """``feature_drift``'s check of every month of the held-out year, against the train split
    of the declared window (the months before validation and test)."""
    declaration = DECLARATION.model_copy(update={"monitoring": monitoring})
    months = sorted(replay[PARTITION_COLUMN].unique())
    training = DECLARATION.model.training
    held_out = months[-training.test_partitions :]
    train_end = months[-(training.test_partitions + training.validation_partitions)]
    train = replay[replay[PARTITION_COLUMN] < train_end].assign(**{SPLIT_COLUMN: "train"})

    @dg.asset(key=asset_key(declaration, declaration.model.features_asset),
              partitions_def=partitions_definition(declaration.partitions))  # fmt: skip
    def day_features(context: dg.AssetExecutionContext) -> dict[str, pd.DataFrame]:
        return {k: replay[replay[PARTITION_COLUMN] == k] for k in context.partition_keys}

    @dg.asset(key=asset_key(declaration, "training_set"))
    def training_set() -> pd.DataFrame:
        return train

    result = dg.materialize_to_memory(
        [day_features, training_set, feature_drift.build(declaration)],
        tags={"dagster/asset_partition_range_start": held_out[0],
              "dagster/asset_partition_range_end": held_out[-1]},
    )  # fmt: skip
    return {e.partition: e for e in result.get_asset_check_evaluations()
            if e.check_name == FEATURE_DRIFT_CHECK}  # fmt: skip


def test_an_ordinary_month_raises_no_drift_warning(replay: pd.DataFrame) -> None:
    checks = _drift(replay, DECLARATION.monitoring)
    assert len(checks) == 12
    warned = {month: check.description for month, check in checks.items() if not check.passed}
    # the warmest December on record in Chicago, and a hot August: their temperatures
    assert set(warned) == {"2015-12-01", "2016-08-01"}, warned
    assert all(text.startswith("PSI over 0.5: temp") for text in warned.values()), warned
    # every month against the whole train split, as before references were declared: the
    # calendar and the riders' own level (a trend) drift in every month
    whole = DECLARATION.monitoring.model_copy(update={"drift_reference": {}})
    for month, check in _drift(replay, whole).items():
        assert not check.passed, month
        assert "dayofyear" in check.description and "rides_lag_7" in check.description, month
