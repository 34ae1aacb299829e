"""Single-run backfills stream partitions: same results as one partition at a time, bounded
memory (lazy inputs with a small cache, outputs written as produced, checks in chunks)."""

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pytest

from ml_assets import pipelines
from ml_assets.contract.dagster_terms import partitions_definition
from ml_assets.data.checks import SchemaCheck, schema_outcome
from ml_assets.home import WAREHOUSE_ENV_VAR
from ml_assets.pipelines import declaration, names
from resources.builder import platform_resources
from resources.landing_zone import LandingZone
from resources.parquet_io_manager import ParquetIOManager
from resources.partition_frames import FrameSpill, PartitionFrames, PartitionStream

pytestmark = pytest.mark.unit

RANGES = {"flights": ("2013-01-01", "2013-01-04"), "taxi": ("2022-01-01", "2022-04-01")}


def _keys(pipeline: str) -> list[str]:
    first, last = RANGES[pipeline]
    keys = partitions_definition(declaration(pipeline).partitions).get_partition_keys()
    return [key for key in keys if first <= key <= last]


def _range_tags(keys: list[str]) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }


def _checks(results: list[dg.ExecuteInProcessResult]) -> dict[tuple, tuple]:
    """(asset, check, partition) → (passed, metadata) of every check evaluation."""
    found = {}
    for result in results:
        for event in result.all_events:
            if event.event_type_value == "ASSET_CHECK_EVALUATION":
                data = event.event_specific_data
                key = (data.asset_key.to_user_string(), data.check_name, data.partition)
                found[key] = (data.passed, {k: v.value for k, v in data.metadata.items()})
    return found


def _tables(warehouse: Path) -> dict[str, pd.DataFrame]:
    return {
        str(path.relative_to(warehouse)): pd.read_parquet(path)
        for path in sorted(warehouse.rglob("*.parquet"))
    }


def _build(pipeline: str, keys: list[str], instance: dg.DagsterInstance, one_by_one: bool):
    """The reference tables, then every partitioned data asset over ``keys``: as one run or one
    run per partition. The check evaluations of the partitioned runs."""
    assets = pipelines.load(pipeline).data_assets
    resources = platform_resources([declaration(name) for name in names()])
    tables = [key for a in assets if a.partitions_def is None for key in a.keys]
    partitioned = [key for a in assets if a.partitions_def is not None for key in a.keys]
    if tables:
        reference = dg.materialize(assets, selection=tables, resources=resources, instance=instance)
        assert reference.success
    runs = [{"partition_key": key} for key in keys] if one_by_one else [{"tags": _range_tags(keys)}]
    results = [
        dg.materialize(assets, selection=partitioned, resources=resources, instance=instance, **run)
        for run in runs
    ]
    assert all(result.success for result in results)
    return _checks(results)


@pytest.mark.parametrize("pipeline", sorted(RANGES))
@pytest.mark.slow
def test_range_run_equals_partition_by_partition(
    pipeline: str,
    landing_zone: LandingZone,
    home: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every stored table and every per-partition check of a single-run backfill are those of
    materializing its partitions one by one (history windows included)."""
    keys = _keys(pipeline)
    pipelines.load(pipeline).publish(landing_zone, keys)
    monkeypatch.setenv(WAREHOUSE_ENV_VAR, str(home / "range"))
    streamed = _build(pipeline, keys, instance, one_by_one=False)
    monkeypatch.setenv(WAREHOUSE_ENV_VAR, str(home / "one_by_one"))
    alone = _build(pipeline, keys, instance, one_by_one=True)

    range_tables, alone_tables = _tables(home / "range"), _tables(home / "one_by_one")
    assert sorted(range_tables) == sorted(alone_tables)
    assert {Path(name).stem for name in range_tables} >= set(keys)
    for name, frame in range_tables.items():
        pd.testing.assert_frame_equal(frame, alone_tables[name], obj=name)
    assert streamed == alone
    assert {partition for _, _, partition in streamed} == set(keys)


def test_a_range_run_holds_a_window_of_partitions_not_the_range(
    landing_zone: LandingZone, home: Path, instance: dg.DagsterInstance
) -> None:
    """Ten days through raw, clean and the features with their 7-day history: each stored
    partition is read once, and no input ever holds more than its window in memory."""
    inputs: list[PartitionFrames] = []
    original = PartitionFrames.__init__

    def recorded(self: PartitionFrames, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        inputs.append(self)

    keys = [f"2013-01-{day:02d}" for day in range(1, 11)]
    pipelines.load("flights").publish(landing_zone, keys)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PartitionFrames, "__init__", recorded)
        _build("flights", keys, instance, one_by_one=False)

    ranges = [frames for frames in inputs if len(frames) == len(keys)]
    assert ranges, "the range inputs are PartitionFrames"
    for frames in ranges:
        assert frames.peak_cached <= 8  # the features' day and its 7 days of history
        assert frames.peak_cached < len(keys)
    # Dagster's type check of an input annotated ``dict`` reads each partition once more
    assert all(frames.loads <= 2 * len(frames) for frames in ranges)
    assert any(frames.peak_cached == 8 for frames in ranges)  # the history window
    assert any(frames.peak_cached == 1 for frames in ranges)  # a partition of its own


# PartitionFrames, PartitionStream, FrameSpill


class _Reader:
    """Frames by key, counting reads."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def __call__(self, key: str) -> pd.DataFrame:
        self.reads.append(key)
        return pd.DataFrame({"key": [key]})


def test_partition_frames_load_on_access_only() -> None:
    reader = _Reader()
    frames = PartitionFrames(["a", "b", "c"], reader, cache_size=2)

    assert (
        len(frames) == 3 and list(frames) == ["a", "b", "c"] and list(frames.keys()) == list("abc")
    )
    assert "b" in frames and "z" not in frames and bool(frames)
    assert reader.reads == []
    assert frames["b"]["key"].tolist() == ["b"]
    assert frames["b"] is frames["b"]
    assert reader.reads == ["b"]
    assert isinstance(frames, dict)  # passes Dagster's check of inputs annotated ``dict``
    assert not PartitionFrames([], reader)


def test_partition_frames_unknown_key_and_read_only() -> None:
    frames = PartitionFrames(["a"], _Reader())

    with pytest.raises(KeyError):
        frames["z"]
    assert frames.get("z") is None
    with pytest.raises(TypeError, match="read-only"):
        frames["a"] = pd.DataFrame()
    with pytest.raises(TypeError, match="read-only"):
        frames.update({"b": pd.DataFrame()})


def test_partition_frames_keep_only_the_last_used() -> None:
    reader = _Reader()
    keys = [str(n) for n in range(10)]
    frames = PartitionFrames(keys, reader, cache_size=3)

    for day in range(len(keys)):  # a sliding window: the day and the two before
        for key in keys[max(0, day - 2) : day + 1]:
            frames[key]
    assert frames.peak_cached == 3
    assert reader.reads == keys  # each read once
    assert [len(f) for f in frames.values()] == [1] * 10
    assert frames.peak_cached == 3
    assert dict(frames.items()).keys() == set(keys)


def test_partition_frames_evict_least_recently_used() -> None:
    reader = _Reader()
    frames = PartitionFrames(["a", "b", "c"], reader, cache_size=2)
    frames["a"], frames["b"], frames["a"], frames["c"]  # b is the least recently used
    frames["a"]
    frames["b"]
    assert reader.reads == ["a", "b", "c", "b"]


def test_stream_is_written_one_partition_at_a_time(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The IO manager writes each produced frame before the next one is produced."""
    days = dg.DailyPartitionsDefinition(start_date="2024-01-01")
    alive: list[weakref.ref] = []
    most_alive = 0

    def produce(key: str) -> pd.DataFrame:
        nonlocal most_alive
        gc.collect()
        most_alive = max(most_alive, sum(ref() is not None for ref in alive))
        frame = pd.DataFrame({"day": [key] * 1000})
        alive.append(weakref.ref(frame))
        return frame

    @dg.asset(partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
    def streamed(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
        yield dg.Output(
            PartitionStream(context.partition_keys, produce, metadata=lambda: {"made": 7})
        )

    result = dg.materialize(
        [streamed],
        resources={"io_manager": ParquetIOManager(base_url=str(tmp_path))},
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2024-01-01",
            "dagster/asset_partition_range_end": "2024-01-10",
        },
    )

    assert result.success
    assert most_alive <= 1  # the one being written while the next is produced
    assert len(list((tmp_path / "streamed").iterdir())) == 10
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["made"].value == 7
    assert metadata["rows_all_partitions"].value == 10_000


def test_stream_is_consumed_once() -> None:
    stream = PartitionStream(["a"], lambda key: pd.DataFrame())
    assert [key for key, _ in stream] == ["a"]
    with pytest.raises(RuntimeError, match="consumed"):
        list(stream)


def test_spilled_frames_come_back_in_order() -> None:
    with FrameSpill() as spill:
        spill.write("b", pd.DataFrame({"x": pd.array(["1"], dtype="string")}))
        spill.write("a", pd.DataFrame({"x": pd.array([], dtype="string")}))
        frames = spill.frames()
        assert list(frames) == ["b", "a"]
        assert frames["b"]["x"].tolist() == ["1"]
        assert str(frames["a"]["x"].dtype) == "string"
        with pytest.raises(ValueError, match="already"):
            spill.write("a", pd.DataFrame())


# schema checks in chunks

SCHEMA = pa.DataFrameSchema(
    {
        "id": pa.Column(int, unique=True),
        "value": pa.Column(float, pa.Check.in_range(0, 10)),
        "group": pa.Column(str),
    },
    unique=["group", "value"],
    name="example",
)


def _frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(rows),
            "value": [float(n % 10) for n in range(rows)],
            "group": [f"g{n}" for n in range(rows)],
        }
    )


def test_large_partition_is_validated_in_slices_with_the_same_outcome() -> None:
    frame = _frame(35)
    frame.loc[30, "id"] = 2  # a duplicate id across slices
    frame.loc[20, "value"] = 99.0  # out of range
    frame.loc[33, ["group", "value"]] = ["g4", 4.0]  # a duplicate pair across slices

    whole = schema_outcome(SCHEMA, frame, chunk_rows=1000)
    sliced = schema_outcome(SCHEMA, frame, chunk_rows=10)

    assert not whole.passed and not sliced.passed
    assert sliced.description == whole.description
    for name in ("failure_count", "rows_checked"):
        assert sliced.metadata[name] == whole.metadata[name]
    rules = [set(o.metadata["failing_rules"].value.splitlines()[2:]) for o in (whole, sliced)]
    assert rules[0] == rules[1]
    assert len(rules[0]) == 4  # id unique, value in range, (group, value) unique: 2 columns


def test_missing_column_of_a_large_partition_is_counted_once() -> None:
    frame = _frame(35).drop(columns="group")
    sliced = schema_outcome(SCHEMA, frame, chunk_rows=10)  # 4 slices
    assert not sliced.passed
    assert sliced.metadata["failure_count"] == 1
    assert "column_in_dataframe" in sliced.metadata["failing_rules"].value


def test_schema_check_reports_each_partition_of_a_chunk() -> None:
    check = SchemaCheck(SCHEMA, chunk_rows=25)
    frames = {f"p{n}": _frame(10).assign(id=lambda f, n=n: f["id"] + 100 * n) for n in range(5)}
    frames["p3"].loc[4, "value"] = -1.0
    for key, frame in frames.items():
        check.add(key, frame)
    outcomes = check.outcomes()

    assert [key for key, outcome in outcomes.items() if not outcome.passed] == ["p3"]
    assert outcomes["p3"].metadata["failure_count"] == 1
    assert all(o.metadata["rows_checked"] == 10 for o in outcomes.values())
