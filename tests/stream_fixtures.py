"""What the stream tests share (``tests/test_stream_source.py``, ``test_stream_faults.py``): the
machine's RabbitMQ, a stream queue of a test's own, and a world of the taxi declaration switched
to read its trips from a stream (``stream_declaration``) that materializes its raw trips."""

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.data.sources import landed_assets
from ml_assets.pipelines.taxi.assets import data_assets
from ml_assets.pipelines.taxi.publish import STREAM_CONNECTION
from ml_assets.pipelines.taxi.schemas import RAW_TRIPS
from resources.builder import platform_resources
from resources.stream_connection import StreamConnection
from sensors.stream_source import RANGE_END, RANGE_START

BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"
"""The machine's RabbitMQ (guest). ``.ci/run`` starts it when it is down."""
URL_VARIABLE = StreamConnection.url_variable(STREAM_CONNECTION)


def broker(url: str = BROKER) -> StreamConnection:
    return StreamConnection(name=STREAM_CONNECTION, url=url)


@contextlib.contextmanager
def stream_queue() -> Iterator[str]:
    """A stream queue of the calling test's own on the machine's RabbitMQ, deleted afterwards."""
    queue = f"test-trips-{uuid.uuid4().hex[:8]}"
    broker().declare(queue)
    try:
        yield queue
    finally:
        with broker().open("cleanup") as (_, channel):
            channel.queue_delete(queue)


class World:
    """One home, instance, set of taxi assets and resources."""

    def __init__(self, home: Path, instance: dg.DagsterInstance, declaration: PipelineDeclaration):
        self.home, self.instance, self.declaration = home, instance, declaration
        self.raw = asset_key(declaration, "raw_trips")
        ingest = landed_assets(declaration, {"trips": RAW_TRIPS})
        self.assets = [*ingest, *(a for a in data_assets if self.raw not in a.keys)]
        self.resources = platform_resources([declaration])

    def materialize(
        self, keys: list[str], selection: Any = None, raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        """A run of ``keys`` (a range), of the raw trips alone unless ``selection`` says."""
        tags = {RANGE_START: keys[0], RANGE_END: keys[-1]} if len(keys) > 1 else {}
        return dg.materialize(
            self.assets,
            selection=selection or dg.AssetSelection.assets(self.raw),
            partition_key=keys[0] if len(keys) == 1 else None,
            tags=tags,
            resources=self.resources,
            instance=self.instance,
            raise_on_error=raise_on_error,
        )

    def stored(self, asset: str, month: str) -> pd.DataFrame:
        return pd.read_parquet(self.home / "warehouse" / "taxi" / asset / f"{month}.parquet")

    def materialization(self, month: str) -> dict[str, Any] | None:
        """The metadata of the latest raw materialization of ``month`` (None: none)."""
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=self.raw, asset_partitions=[month]), limit=1
        ).records
        if not records:
            return None
        return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}
