"""The Parquet IO manager: one file per partition, idempotent writes, clear errors, local and S3."""

import io
from datetime import date
from pathlib import Path

import boto3
import dagster as dg
import pandas as pd
import pytest

from ml_assets.data.clean_and_rejected import ROWS_CONSERVED
from ml_assets.pipelines.flights.assets import data_assets, key
from ml_assets.pipelines.flights.publish import day_keys, publish
from resources.landing_zone import LandingZone
from resources.parquet_io_manager import ParquetIOManager
from resources.paths import to_upath, write_bytes_atomically
from resources.table_snapshot_store import TableSnapshotStore
from resources.table_snapshots import TableSnapshots

pytestmark = pytest.mark.integration

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01")
RANGE = {
    "dagster/asset_partition_range_start": "2024-01-01",
    "dagster/asset_partition_range_end": "2024-01-03",
}


class Version(dg.Config):
    version: int = 1


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def daily(context: dg.AssetExecutionContext, config: Version) -> dict[str, pd.DataFrame]:
    return {
        k: pd.DataFrame({"day": [k] * (i + 1), "version": config.version})
        for i, k in enumerate(context.partition_keys)
    }


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def downstream(daily: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {k: frame.assign(seen=True) for k, frame in daily.items()}


@dg.asset(
    partitions_def=DAYS,
    ins={
        "daily": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2),
            metadata={"allow_missing_partitions": True},
        )
    },
)
def window(daily: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Reads its day and the two before, tolerating days that were never materialized."""
    return {"2024-01-03": pd.DataFrame({"days_read": [",".join(sorted(daily))]})}


@dg.asset(partitions_def=DAYS)
def returns_a_frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1]})


@dg.asset(partitions_def=DAYS)
def returns_wrong_keys() -> dict[str, pd.DataFrame]:
    return {"1999-01-01": pd.DataFrame({"a": [1]})}


@dg.asset
def whole() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3]})


@dg.asset
def total(whole: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"total": [whole["a"].sum()]})


ASSETS = [daily, downstream, window, returns_a_frame, returns_wrong_keys, whole, total]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "warehouse"


@pytest.fixture
def io_resources(base: Path) -> dict:
    return {"io_manager": ParquetIOManager(base_url=str(base))}


def run(
    selection: list[dg.AssetsDefinition],
    resources: dict,
    instance: dg.DagsterInstance,
    version: int = 1,
    **kwargs: object,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        selection=selection,
        resources=resources,
        instance=instance,
        run_config={"ops": {"daily": {"config": {"version": version}}}}
        if daily in selection
        else None,
        **kwargs,
    )


def files_under(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_range_run_writes_one_file_per_partition(
    io_resources: dict, base: Path, instance: dg.DagsterInstance
) -> None:
    result = run([daily], io_resources, instance, tags=RANGE)

    assert result.success
    assert files_under(base / "daily") == [f"2024-01-0{d}.parquet" for d in (1, 2, 3)]
    for i, day in enumerate(["2024-01-01", "2024-01-02", "2024-01-03"]):
        frame = pd.read_parquet(base / "daily" / f"{day}.parquet")
        assert frame["day"].tolist() == [day] * (i + 1)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["partitions_written"].value == 3
    assert metadata["rows_all_partitions"].value == 6


def test_range_is_loaded_downstream_as_a_dict(
    io_resources: dict, base: Path, instance: dg.DagsterInstance
) -> None:
    result = run([daily, downstream], io_resources, instance, tags=RANGE)

    assert result.success
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        frame = pd.read_parquet(base / "downstream" / f"{day}.parquet")
        assert frame["seen"].all()
        assert set(frame["day"]) == {day}


def test_rematerializing_a_partition_replaces_it(
    io_resources: dict, base: Path, instance: dg.DagsterInstance
) -> None:
    assert run([daily], io_resources, instance, tags=RANGE).success
    again = run([daily], io_resources, instance, version=2, partition_key="2024-01-02")
    assert again.success
    again = run([daily], io_resources, instance, version=3, partition_key="2024-01-02")
    assert again.success

    assert files_under(base / "daily") == [f"2024-01-0{d}.parquet" for d in (1, 2, 3)]
    replaced = pd.read_parquet(base / "daily" / "2024-01-02.parquet")
    assert replaced["version"].tolist() == [3]
    untouched = pd.read_parquet(base / "daily" / "2024-01-03.parquet")
    assert untouched["version"].tolist() == [1, 1, 1]
    metadata = again.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["dagster/row_count"].value == 1
    assert metadata["path"].value.endswith("daily/2024-01-02.parquet")


def test_missing_upstream_partition_is_named(
    io_resources: dict, instance: dg.DagsterInstance
) -> None:
    assert run([daily], io_resources, instance, partition_key="2024-01-01").success

    with pytest.raises(FileNotFoundError, match="Partition 2024-01-02 of daily has not been"):
        run([downstream], io_resources, instance, partition_key="2024-01-02")


def test_missing_partitions_allowed_by_input_metadata(
    io_resources: dict, base: Path, instance: dg.DagsterInstance
) -> None:
    assert run([daily], io_resources, instance, partition_key="2024-01-01").success
    assert run([daily], io_resources, instance, partition_key="2024-01-03").success

    assert run([window], io_resources, instance, partition_key="2024-01-03").success
    frame = pd.read_parquet(base / "window" / "2024-01-03.parquet")
    assert frame["days_read"].tolist() == ["2024-01-01,2024-01-03"]


@pytest.mark.parametrize("asset", [returns_a_frame, returns_wrong_keys])
def test_partitioned_asset_must_return_a_dict_of_its_keys(
    io_resources: dict, base: Path, instance: dg.DagsterInstance, asset: dg.AssetsDefinition
) -> None:
    with pytest.raises(TypeError, match="must return a dict with one DataFrame per partition"):
        run([asset], io_resources, instance, partition_key="2024-01-01")
    assert not (base / asset.key.path[-1]).exists()


def test_unpartitioned_asset_is_one_file(
    io_resources: dict, base: Path, instance: dg.DagsterInstance
) -> None:
    result = run([whole, total], io_resources, instance)

    assert result.success
    assert pd.read_parquet(base / "whole.parquet")["a"].tolist() == [1, 2, 3]
    assert pd.read_parquet(base / "total.parquet")["total"].tolist() == [6]
    counts = {
        e.asset_key.path[-1]: e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
    }
    assert counts == {"whole": 3, "total": 1}


def test_failed_write_keeps_the_old_file_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = to_upath(str(tmp_path / "table" / "2024-01-01.parquet"))
    write_bytes_atomically(path, b"old")
    write_bytes_atomically(path, b"new")
    assert path.read_bytes() == b"new"

    def broken_rename(self: object, target: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(type(path), "rename", broken_rename)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomically(path, b"torn")

    assert path.read_bytes() == b"new"
    assert files_under(tmp_path / "table") == ["2024-01-01.parquet"]


# S3 (moto server)


def _s3_parquet(bucket: str, key_name: str) -> pd.DataFrame:
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key_name)["Body"].read()
    return pd.read_parquet(io.BytesIO(body))


def test_raw_and_clean_flights_on_s3(
    s3_bucket: str, home: Path, instance: dg.DagsterInstance
) -> None:
    landing = LandingZone(url=f"s3://{s3_bucket}/landing")
    written = publish(landing, day_keys(date(2013, 1, 2), date(2013, 1, 2)))
    assert f"s3://{s3_bucket}/landing/flights/2013-01-02.csv" in written
    landed = landing.list_files("flights")
    assert [f.name for f in landed] == ["2013-01-02"]
    assert landed[0].stat_signature  # the ETag

    resources = {
        "io_manager": ParquetIOManager(base_url=f"s3://{s3_bucket}/warehouse"),
        "landing_zone": landing,
        "online_store": TableSnapshotStore(base_url=f"s3://{s3_bucket}/online"),
    }
    tables = [key("planes"), key("airports"), key("airlines")]
    assert dg.materialize(data_assets, selection=tables, resources=resources).success
    result = dg.materialize(
        data_assets,
        selection=[key("raw_flights"), key("flights_clean"), key("flights_rejected")],
        partition_key="2013-01-02",
        resources=resources,
        instance=instance,
    )

    assert result.success
    objects = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="warehouse/")
    assert sorted(o["Key"] for o in objects["Contents"]) == [
        "warehouse/flights/airlines.parquet",
        "warehouse/flights/airports.parquet",
        "warehouse/flights/flights_clean/2013-01-02.parquet",
        "warehouse/flights/flights_rejected/2013-01-02.parquet",
        "warehouse/flights/planes.parquet",
        "warehouse/flights/raw_flights/2013-01-02.parquet",
    ]
    raw = _s3_parquet(s3_bucket, "warehouse/flights/raw_flights/2013-01-02.parquet")
    clean = _s3_parquet(s3_bucket, "warehouse/flights/flights_clean/2013-01-02.parquet")
    assert len(raw) == len(clean) == 943
    assert clean["cancelled"].sum() == 8
    checks = {
        e.event_specific_data.check_name: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert checks[ROWS_CONSERVED]
    assert all(checks.values()), checks
    assert not (home / "warehouse").exists()
    assert not (home / "landing").exists()


def test_table_snapshots_on_s3_are_complete_or_absent(s3_bucket: str) -> None:
    """A snapshot is listed only once its manifest is written; rewriting replaces it."""
    snapshots = TableSnapshots(f"s3://{s3_bucket}/online")
    path = ("flights", "online_features")
    tables = {"a": pd.DataFrame({"x": [1, 2]}), "b": pd.DataFrame({"y": ["u"]})}
    snapshots.write(path, "2013-01-02", tables)
    snapshots.write(path, "2013-01-01", {"a": tables["a"]})
    # a snapshot whose writer died before the manifest: tables but no manifest
    folder = snapshots.base.joinpath(*path, "2013-01-03")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.parquet").write_bytes(b"partial")

    assert snapshots.partitions(path) == ["2013-01-01", "2013-01-02"]
    read = snapshots.read(path, "2013-01-02")
    assert set(read) == {"a", "b"}
    pd.testing.assert_frame_equal(read["b"], tables["b"])
    assert list(snapshots.read(path, "2013-01-01")) == ["a"]
