"""The warehouse as code outside a run's inputs reads it: a smoke test's rows, a rollout's
outcomes. Runs read and write it through the Parquet IO manager, on the same base URL."""

import dagster as dg
import pandas as pd

from resources.parquet_io_manager import read_partition
from resources.paths import to_upath


class Warehouse(dg.ConfigurableResource):
    """The stored partitions of the warehouse under ``base_url`` (a folder or ``s3://...``)."""

    base_url: str

    def stored_partitions(self, asset_key: dg.AssetKey) -> list[str]:
        """The partitions of ``asset_key`` written so far, in order."""
        folder = to_upath(self.base_url).joinpath(*asset_key.path)
        if not folder.exists():
            return []
        return sorted(
            p.name.removesuffix(".parquet") for p in folder.iterdir() if p.name.endswith(".parquet")
        )

    def read(self, asset_key: dg.AssetKey, partition_key: str) -> pd.DataFrame:
        """One stored partition of ``asset_key``."""
        return read_partition(self.base_url, asset_key, partition_key)
