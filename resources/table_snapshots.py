"""Sets of tables that are written and read as one unit: the online feature snapshots.

A snapshot of ``partition`` lives at ``<base>/<asset key path>/<partition>/<table>.parquet``
with a ``_SNAPSHOT.json`` manifest written last, so a reader (the serving app, at each reload)
only ever sees complete snapshots and a crash mid-write leaves the previous one in use. No
Dagster here: the services read the snapshots through this; the assets write them through the
resource that wraps it (``resources.table_snapshot_store``).
"""

import io
import json
from collections.abc import Mapping, Sequence

import pandas as pd
from upath import UPath

from resources.paths import read_bytes, to_upath, write_bytes_atomically

MANIFEST = "_SNAPSHOT.json"


class TableSnapshots:
    """Snapshots under ``base_url`` (a local directory or ``s3://…``)."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url
        self.base = to_upath(base_url)

    def _dir(self, asset_path: Sequence[str], partition: str) -> UPath:
        return self.base.joinpath(*asset_path, partition)

    def write(
        self, asset_path: Sequence[str], partition: str, tables: Mapping[str, pd.DataFrame]
    ) -> str:
        """Write ``tables`` as the snapshot of ``partition``, replacing any previous one."""
        folder = self._dir(asset_path, partition)
        (folder / MANIFEST).unlink(missing_ok=True)
        for name, frame in tables.items():
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            write_bytes_atomically(folder / f"{name}.parquet", buffer.getvalue())
        manifest = {"partition": partition, "rows": {n: len(f) for n, f in tables.items()}}
        write_bytes_atomically(folder / MANIFEST, json.dumps(manifest).encode())
        return str(folder)

    def partitions(self, asset_path: Sequence[str]) -> list[str]:
        """Partitions with a complete snapshot, in order."""
        root = self.base.joinpath(*asset_path)
        if not root.exists():
            return []
        return sorted(p.name for p in root.iterdir() if (p / MANIFEST).exists())

    def read(self, asset_path: Sequence[str], partition: str) -> dict[str, pd.DataFrame]:
        """The tables of ``partition``'s snapshot; ``FileNotFoundError`` if it is incomplete."""
        folder = self._dir(asset_path, partition)
        manifest = json.loads(read_bytes(folder / MANIFEST))
        return {
            name: pd.read_parquet(io.BytesIO(read_bytes(folder / f"{name}.parquet")))
            for name in manifest["rows"]
        }
