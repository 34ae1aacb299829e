"""The prediction log as the platform reads it: the files the services append, by pipeline and
partition (``ml_assets.contract.prediction_log_layout``), on a local disk or an object store."""

import dagster as dg
import pandas as pd
from pydantic import Field
from upath import UPath

from ml_assets.contract.prediction_log_layout import (
    COLUMNS,
    IDENTITY,
    is_log_file,
    partition_folder,
)
from resources.paths import to_upath


class PredictionLogStore(dg.ConfigurableResource):
    """Where the prediction services append what they served (``base_url``: a local directory
    or ``s3://...``), read by the prediction-log sensor, ``served_predictions`` and the rollout
    step; the services write it themselves (they run without Dagster)."""

    base_url: str = Field(description="The log's root: a local directory or s3://bucket/prefix.")

    def partitions(self, pipeline: str) -> list[str]:
        """The partitions ``pipeline`` has a folder for (``_outside`` included)."""
        folder = to_upath(self.base_url) / pipeline
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    def files(self, pipeline: str, partition: str) -> list[UPath]:
        """The complete log files of ``pipeline``'s ``partition``, oldest first."""
        folder = partition_folder(to_upath(self.base_url), pipeline, partition)
        if not folder.exists():
            return []
        return sorted((p for p in folder.iterdir() if is_log_file(p.name)), key=lambda p: p.name)

    def signatures(self, pipeline: str, partitions: set[str]) -> dict[str, str]:
        """Each logged partition's signature (its file count and newest file): what changes
        when a service appends to it."""
        signatures = {}
        for partition in set(self.partitions(pipeline)) & partitions:
            if names := [p.name for p in self.files(pipeline, partition)]:
                signatures[partition] = f"{len(names)}:{names[-1]}"
        return signatures

    def read(self, pipeline: str, partition: str) -> tuple[pd.DataFrame, int, int]:
        """The logged predictions of ``partition``, each once; the files read and the duplicates
        dropped."""
        import pyarrow.parquet as pq

        files = self.files(pipeline, partition)
        frames = []
        for path in files:
            with path.open("rb") as file:
                frames.append(pq.read_table(file).to_pandas())
        if not frames:
            empty = pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
            return empty.astype({"served_at": "datetime64[ns, UTC]", "score": "float64"}), 0, 0
        rows = pd.concat(frames, ignore_index=True)
        kept = rows.drop_duplicates(IDENTITY).sort_values(["served_at", "request_id", "item_index"])
        kept["served_at"] = pd.to_datetime(kept["served_at"], unit="s", utc=True)
        return kept.reset_index(drop=True), len(files), len(rows) - len(kept)
