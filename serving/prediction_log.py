"""The service's prediction log: every prediction, appended in batches off the request path.

A request hands its items and scores to ``PredictionLog.append`` (one ``deque.append``: no I/O,
no lock, no serialization on the request path). A writer thread drains the queue every
``flush_seconds`` or as soon as ``flush_records`` predictions wait, and writes each batch as new
Parquet files, one per partition the batch's predictions belong to, in the layout of
``ml_assets.contract.prediction_log_layout`` (which the readers use too). Each file appears
whole (locally renamed into place, on S3 one PUT), so a reader never sees a torn batch, and
nothing is appended to an existing file, which object stores cannot do. A crash loses at most
the predictions not yet flushed. When writing fails, the batch is kept and retried, and when the
queue holds more than ``max_pending`` predictions the oldest are dropped and counted: the log
never blocks or fails a request. Predictions dated outside the pipeline's partitions go to the
pipeline's ``_outside`` folder, counted, never lost.
"""

import datetime as dt
import io
import logging
import operator
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ml_assets.contract.prediction_log_layout import COLUMNS, OUTSIDE, partition_folder
from resources.paths import to_upath, write_bytes_atomically

log = logging.getLogger("serving.prediction_log")


class Scored(NamedTuple):
    """One request's predictions by one model: what the log records of it (a named tuple:
    made on the request path, a quarter of a frozen dataclass's cost)."""

    request_id: str
    served_at: float
    """Seconds since the epoch."""
    latency_ms: float
    model_version: str
    role: str
    """``champion`` or ``challenger``."""
    stage: str
    """``full``, ``shadow`` or ``canary``: how the version was serving."""
    returned: bool
    """Whether these predictions were the answer (a shadow's never are)."""
    items: Sequence[Any]
    """The validated request items (pydantic models); the champion's and the challenger's
    records of one request share the one sequence."""
    ids: Sequence[Any]
    scores: np.ndarray
    body: bytes | None = None
    """The raw body of a one-item request: logged as it came, not serialized again."""


class PredictionLog:
    """Batched, durable appends of a service's predictions (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        pipeline: str,
        partition_of: Callable[[Any, float], str | None],
        flush_seconds: float,
        flush_records: int,
        max_pending: int = 1_000_000,
    ) -> None:
        self.root, self.pipeline = to_upath(url), pipeline
        self.partition_of = partition_of
        """The partition key of an item served at a time (None: outside the partitions)."""
        self.flush_seconds, self.flush_records, self.max_pending = (
            flush_seconds, flush_records, max_pending,
        )  # fmt: skip
        self.queue: deque[tuple[str, tuple]] = deque()
        """``(partition, row)``, a row's values in ``COLUMNS`` order."""
        self.written = self.dropped = self.outside = self.failures = self.in_flight = 0
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.source = f"{socket.gethostname()}-{os.getpid()}"
        self.sequence = 0
        self.retry: list[tuple[str, tuple]] = []
        self.thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def append(self, scored: Scored) -> None:
        """Queue one request's predictions; never blocks, never raises.

        The rows are built here, a few microseconds a prediction: the writer thread would
        hold the interpreter lock that the request handlers need for longer doing the same."""
        try:
            rows = self._rows(scored)
        except Exception as error:  # a prediction that cannot be described is counted, not raised
            self.dropped += len(scored.ids)
            log.warning("prediction log: request %s not logged: %s", scored.request_id, error)
            return
        self.queue.extend(rows)
        if len(self.queue) >= self.flush_records:
            self.wake.set()

    def _rows(self, scored: Scored) -> list[tuple[str, tuple]]:
        """``(partition, row)`` of each item (a one-item request's raw body logged as it came)."""
        items, ids, scores = scored.items, scored.ids, scored.scores.tolist()
        if scored.body is not None and len(items) == 1:
            requests = [scored.body.decode()]
        else:
            requests = [item.model_dump_json() for item in items]
        return [
            (self.partition_of(item, scored.served_at) or OUTSIDE,
             (scored.request_id, i, scored.served_at, scored.latency_ms, scored.model_version,
              scored.role, scored.stage, scored.returned, str(ids[i]), scores[i], requests[i]))
            for i, item in enumerate(items)
        ]  # fmt: skip

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what is queued and stop the writer (on a clean shutdown)."""
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(self.flush_seconds)
            self.wake.clear()
            self.flush()
        self.flush()

    def flush(self) -> None:
        """Write what is queued (and what failed before); keep it for the next try on failure."""
        taken = len(self.queue)  # what the handlers append meanwhile waits for the next flush
        # pending until written: counted as being written before they leave the queue
        self.in_flight = len(self.retry) + taken
        batch, self.retry = self.retry, []
        batch += [self.queue.popleft() for _ in range(taken)]
        if (overflow := len(batch) - self.max_pending) > 0:  # the oldest go; the count says so
            self.dropped += overflow
            batch = batch[overflow:]
            self.in_flight = len(batch)
        try:
            if not batch:
                return
            self._write(batch)
        except Exception as error:  # the service goes on; the batch waits for the next flush
            self.failures += 1
            self.retry = batch
            log.warning("prediction log: writing %d predictions failed: %s", len(batch), error)
        finally:
            self.in_flight = 0

    def _write(self, batch: list[tuple[str, tuple]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        partitions = set(map(_PARTITION, batch))
        if len(partitions) == 1:  # the usual case: no per-row work at all
            rows_of = {partitions.pop(): list(map(_ROW, batch))}
        else:
            rows_of = {}
            for partition, row in batch:
                rows_of.setdefault(partition, []).append(row)
        first = dt.datetime.fromtimestamp(batch[0][1][2], dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        self.sequence += 1
        name = f"{first}-{self.source}-{self.sequence:08d}-{uuid.uuid4().hex[:6]}.parquet"
        for partition, rows in rows_of.items():
            table = pa.table(dict(zip(COLUMNS, map(list, zip(*rows, strict=True)), strict=True)))
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            folder = partition_folder(self.root, self.pipeline, partition)
            write_bytes_atomically(folder / name, buffer.getvalue())
        self.written += len(batch)
        self.outside += len(rows_of.get(OUTSIDE, ()))

    def figures(self) -> dict[str, int]:
        return {
            "pending": len(self.queue) + self.in_flight + len(self.retry),
            "written": self.written,
            "dropped": self.dropped,
            "outside_partitions": self.outside,
            "write_failures": self.failures,
        }


_PARTITION, _ROW = operator.itemgetter(0), operator.itemgetter(1)
