"""Parquet storage for data frames: one file per asset, or one file per partition.

Each partition is written to ``<base>/<asset key path>/<partition_key>.parquet`` atomically, so
re-materializing a partition replaces it and a crash never leaves a torn file. Partitioned
assets exchange partitions one at a time (``resources.partition_frames``), whether a run covers
one partition or a year-long range (single-run backfills), so memory does not grow with the
range: a range input is a lazy ``PartitionFrames`` (a mapping from partition key to frame); an
output is a ``PartitionStream`` written as it is produced, or a ``dict`` of frames.
"""

import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from upath import UPath

from resources.partition_frames import PartitionFrames, PartitionStream
from resources.paths import read_bytes, to_upath, write_bytes_atomically

# Arrow's bundled allocator keeps freed buffers for reuse; a step that reads and writes one
# partition at a time peaks lower when they go back to the system (year backfill: 6% less PSS,
# same wall time). Every process that loads the platform reads Parquet through here.
pa.set_memory_pool(pa.system_memory_pool())


class _PartitionedParquetIOManager(dg.UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        buffer = io.BytesIO()
        obj.to_parquet(buffer, index=False)
        write_bytes_atomically(path, buffer.getvalue())

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(read_bytes(path)))

    def load_input(self, context: dg.InputContext) -> Any:
        # A mapping may select no upstream partition at all (the days before the first one):
        # that is an empty mapping, which is what a partitioned input always is, not None.
        partitioned = context.has_asset_key and context.has_asset_partitions
        if partitioned and not context.asset_partition_keys:
            return PartitionFrames([], lambda key: pd.DataFrame())
        return super().load_input(context)

    def load_partitions(self, context: dg.InputContext) -> PartitionFrames:
        """The input's partitions, each read when the asset first uses it. Every one must have
        been materialized (checked now, before any work) unless the input's metadata sets
        ``allow_missing_partitions``; then the missing ones are not in the mapping."""
        paths = self._get_paths_for_partitions(context)
        allow_missing = (context.definition_metadata or {}).get("allow_missing_partitions", False)
        stored = []
        for key in context.asset_partition_keys:
            if paths[key].exists():
                stored.append(key)
            elif not allow_missing:
                raise FileNotFoundError(
                    f"Partition {key} of {context.asset_key.to_user_string()} has not been "
                    f"materialized (no file at {paths[key]}); materialize it first."
                )
        return PartitionFrames(
            stored,
            lambda key: self.load_from_path(context, paths[key]),
            cache_size=_partitions_read_per_partition(context),
        )

    def read_stored(
        self, asset_key: dg.AssetKey, partition_key: str, columns: Sequence[str]
    ) -> pd.DataFrame | None:
        """The stored partition ``partition_key`` of ``asset_key``, only those of ``columns`` it
        has; None if it was never materialized. For an asset that judges a partition against
        its own earlier partitions without depending on them (see ``clean_assets``)."""
        import pyarrow.parquet as pq

        path = self._base_path.joinpath(*asset_key.path, f"{partition_key}{self.extension}")
        if not path.exists():
            return None
        stored = pq.ParquetFile(io.BytesIO(read_bytes(path)))
        present = [c for c in columns if c in stored.schema_arrow.names]
        return stored.read(columns=present).to_pandas()

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if not context.has_asset_partitions:
            super().handle_output(context, obj)
            context.add_output_metadata(_frame_metadata([len(obj)]))  # type: ignore[arg-type]
            return
        expected = context.asset_partition_keys
        if isinstance(obj, PartitionStream):
            keys, frames = obj.keys, iter(obj)
        elif isinstance(obj, Mapping):
            keys, frames = list(obj), ((key, obj[key]) for key in expected)
        else:
            keys, frames = None, iter(())
        if keys is None or len(keys) != len(expected) or set(keys) != set(expected):
            raise TypeError(
                f"{context.asset_key.to_user_string()} must return a dict with one DataFrame per "
                f"partition key of the run ({len(expected)} keys), or a PartitionStream of them."
            )
        paths = self._get_paths_for_partitions(context)
        rows = self._write(context, frames, paths)
        metadata = _frame_metadata(rows)
        if len(rows) == 1:
            metadata["path"] = dg.MetadataValue.path(str(next(iter(paths.values()))))
        else:
            metadata["partitions_written"] = len(rows)
        if isinstance(obj, PartitionStream):
            metadata.update(obj.metadata())
        context.add_output_metadata(metadata)

    def _write(
        self,
        context: dg.OutputContext,
        frames: Iterable[tuple[str, pd.DataFrame]],
        paths: Mapping[str, UPath],
    ) -> list[int]:
        """Write each frame as it comes (holding one at a time); the row count of each."""
        rows = []
        for key, frame in frames:
            self.dump_to_path(context, frame, paths[key])
            rows.append(len(frame))
        return rows


def _partitions_read_per_partition(context: dg.InputContext) -> int:
    """How many upstream partitions one partition of the run reads: the frames to keep so that
    a sliding window (its day and the days before) reads each file once. A time-window mapping
    with offsets reads ``end_offset - start_offset + 1``; any other mapping, one at a time."""
    try:
        assets_def = context.step_context.assets_def
        mapping = assets_def.get_partition_mapping(context.asset_key) if assets_def else None
    except (dg.DagsterInvariantViolationError, KeyError, AttributeError):
        return 1
    if isinstance(mapping, dg.TimeWindowPartitionMapping):
        return max(1, mapping.end_offset - mapping.start_offset + 1)
    return 1


def _frame_metadata(rows: list[int]) -> dict[str, Any]:
    if len(rows) == 1:
        return {"dagster/row_count": rows[0]}
    return {"rows_all_partitions": sum(rows)}


def read_partition(base_url: str, asset_key: dg.AssetKey, partition_key: str) -> pd.DataFrame:
    """One stored partition, for code outside a run's inputs (e.g. a smoke test's rows)."""
    path = to_upath(base_url).joinpath(*asset_key.path, f"{partition_key}.parquet")
    return pd.read_parquet(io.BytesIO(read_bytes(path)))


class ParquetIOManager(dg.ConfigurableIOManagerFactory):
    """Stores data frames as Parquet under ``base_url``: a local directory or ``s3://...``."""

    base_url: str

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.UPathIOManager:
        return _PartitionedParquetIOManager(base_path=to_upath(self.base_url))
