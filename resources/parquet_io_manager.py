"""Parquet storage for data frames: one file per asset, or one file per partition.

Partitioned assets exchange ``dict[partition_key, DataFrame]`` with this IO manager in both
directions, whether a run covers one partition or a year-long range (single-run backfills):
each partition is written to ``<base>/<asset key path>/<partition_key>.parquet`` atomically,
so re-materializing a partition replaces it and a crash never leaves a torn file.
"""

import io
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd
from upath import UPath

from resources.paths import to_upath, write_bytes_atomically


class _PartitionedParquetIOManager(dg.UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        buffer = io.BytesIO()
        obj.to_parquet(buffer, index=False)
        write_bytes_atomically(path, buffer.getvalue())

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(path.read_bytes()))

    def load_input(self, context: dg.InputContext) -> Any:
        # A mapping may select no upstream partition at all (the days before the first one):
        # that is an empty dict, which is what a partitioned input always is, not None.
        partitioned = context.has_asset_key and context.has_asset_partitions
        if partitioned and not context.asset_partition_keys:
            return {}
        return super().load_input(context)

    def load_partitions(self, context: dg.InputContext) -> dict[str, pd.DataFrame]:
        paths = self._get_paths_for_partitions(context)
        allow_missing = (context.definition_metadata or {}).get("allow_missing_partitions", False)
        frames = {}
        for key in context.asset_partition_keys:
            try:
                frames[key] = self.load_from_path(context, paths[key])
            except FileNotFoundError as error:
                if not allow_missing:
                    raise FileNotFoundError(
                        f"Partition {key} of {context.asset_key.to_user_string()} has not been "
                        f"materialized (no file at {paths[key]}); materialize it first."
                    ) from error
        return frames

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if not context.has_asset_partitions:
            super().handle_output(context, obj)
            context.add_output_metadata(_frame_metadata([obj]))  # type: ignore[list-item]
            return
        if not isinstance(obj, Mapping) or set(obj) != set(context.asset_partition_keys):
            raise TypeError(
                f"{context.asset_key.to_user_string()} must return a dict with one DataFrame per "
                f"partition key of the run ({len(context.asset_partition_keys)} keys)."
            )
        paths = self._get_paths_for_partitions(context)
        for key, frame in obj.items():
            self.dump_to_path(context, frame, paths[key])
        metadata = _frame_metadata(list(obj.values()))
        if len(obj) == 1:
            metadata["path"] = dg.MetadataValue.path(str(next(iter(paths.values()))))
        else:
            metadata["partitions_written"] = len(obj)
        context.add_output_metadata(metadata)


def _frame_metadata(frames: list[pd.DataFrame]) -> dict[str, Any]:
    rows = sum(len(frame) for frame in frames)
    if len(frames) == 1:
        return {"dagster/row_count": rows}
    return {"rows_all_partitions": rows}


def read_partition(base_url: str, asset_key: dg.AssetKey, partition_key: str) -> pd.DataFrame:
    """One stored partition, for code outside a run's inputs (e.g. a smoke test's rows)."""
    path = to_upath(base_url).joinpath(*asset_key.path, f"{partition_key}.parquet")
    return pd.read_parquet(io.BytesIO(path.read_bytes()))


class ParquetIOManager(dg.ConfigurableIOManagerFactory):
    """Stores data frames as Parquet under ``base_url``: a local directory or ``s3://...``."""

    base_url: str

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.UPathIOManager:
        return _PartitionedParquetIOManager(base_path=to_upath(self.base_url))
