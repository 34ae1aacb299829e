"""A consumer of the taxi trips' stream killed mid-run, for ``tests/test_stream_faults.py``:
``python stream_killed_consumer.py QUEUE PARTITION before|after`` materializes the raw trips of
PARTITION from the stream QUEUE on the instance of ``$DAGSTER_HOME`` and the home of
``$ML_ASSETS_HOME``, and its process is killed (SIGKILL, nothing cleaned up) when the IO manager
is about to write the partition (``before``) or has written it, before Dagster records the
materialization and its offsets (``after``)."""

import os
import signal
import sys

import dagster as dg
from stream_fixtures import World

from ml_assets.home import warehouse_url
from ml_assets.pipelines.taxi.publish import stream_declaration
from resources.parquet_io_manager import ParquetIOManager


class KilledAround(dg.ConfigurableIOManager):
    """The platform's Parquet IO manager, its process killed around the write."""

    base_url: str
    when: str

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if self.when == "after":
            ParquetIOManager(base_url=self.base_url).create_io_manager(None).handle_output(
                context, obj
            )
        os.kill(os.getpid(), signal.SIGKILL)

    def load_input(self, context: dg.InputContext) -> object:
        raise NotImplementedError


if __name__ == "__main__":
    queue, partition, when = sys.argv[1:]
    with dg.DagsterInstance.get() as instance:
        world = World(None, instance, stream_declaration(queue))  # type: ignore[arg-type]
        world.resources["io_manager"] = KilledAround(base_url=warehouse_url(), when=when)
        world.materialize([partition])
