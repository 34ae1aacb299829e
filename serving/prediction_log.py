"""The service's prediction log: every prediction, appended in batches off the request path.

A request hands its items and scores to ``PredictionLog.append`` (one ``deque.append``: no I/O,
no lock, no serialization on the request path). A writer thread drains the queue every
``flush_seconds`` or as soon as ``flush_records`` predictions wait, and writes each batch as
new Parquet files, one per partition the batch's predictions belong to:

    <log>/<pipeline>/<partition>/<first served_at>-<host>-<pid>-<sequence>.parquet

Each file appears whole (locally renamed into place, on S3 one PUT), so a reader never sees a
torn batch, and nothing is appended to an existing file, which object stores cannot do. A
crash loses at most the predictions not yet flushed. When writing fails, the batch is kept and
retried, and when the queue holds more than ``max_pending`` predictions the oldest are dropped
and counted: the log never blocks or fails a request. Predictions dated outside the pipeline's
partitions go to ``<log>/<pipeline>/_outside/``, counted, never lost.
"""

import datetime as dt
import io
import logging
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from resources.paths import to_upath, write_bytes_atomically

OUTSIDE = "_outside"
"""The folder of predictions whose partition the pipeline does not have."""
COLUMNS = (
    "request_id", "item_index", "served_at", "latency_ms", "model_version", "role", "stage",
    "returned", "item_id", "score", "request",
)  # fmt: skip
"""The columns of a log file (``served_predictions`` reads them). A prediction is identified by
``(request_id, item_index, model_version)``: a batch retried after a partial write may be in
the log twice, and ``served_predictions`` keeps it once."""
log = logging.getLogger("serving.prediction_log")


@dataclass(frozen=True)
class Scored:
    """One request's predictions by one model: what the log records of it."""

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
        self.folder = to_upath(url) / pipeline
        self.partition_of = partition_of
        """The partition key of an item served at a time (None: outside the partitions)."""
        self.flush_seconds, self.flush_records, self.max_pending = (
            flush_seconds, flush_records, max_pending,
        )  # fmt: skip
        self.queue: deque[Scored] = deque()
        self.pending = 0
        """Predictions queued (approximate: updated without a lock, read by the writer)."""
        self.written = self.dropped = self.outside = self.failures = self.in_flight = 0
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.source = f"{socket.gethostname()}-{os.getpid()}"
        self.sequence = 0
        self.retry: list[Scored] = []
        self.thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def append(self, scored: Scored) -> None:
        """Queue one request's predictions; never blocks, never raises."""
        self.queue.append(scored)
        self.pending += len(scored.ids)
        if self.pending >= self.flush_records:
            self.wake.set()

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
        batch, self.retry = self.retry, []
        while self.queue:
            scored = self.queue.popleft()
            self.pending -= len(scored.ids)
            batch.append(scored)
        if not batch:
            return
        overflow = sum(len(s.ids) for s in batch) - self.max_pending
        while overflow > 0 and batch:  # the oldest go first; the count says how many
            dropped = batch.pop(0)
            self.dropped += len(dropped.ids)
            overflow -= len(dropped.ids)
        self.in_flight = sum(len(s.ids) for s in batch)
        try:
            self._write(batch)
        except Exception as error:  # the service goes on; the batch waits for the next flush
            self.failures += 1
            self.retry = batch
            log.warning("prediction log: writing %d requests failed: %s", len(batch), error)
        finally:
            self.in_flight = 0

    def _write(self, batch: list[Scored]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        by_partition: dict[str, dict[str, list]] = {}
        described: dict[int, tuple[list[str], list[str]]] = {}
        for scored in batch:
            key = id(scored.items)  # one request's records share their items: describe once
            if key not in described:
                described[key] = self._describe(scored)
            partitions, requests = described[key]
            for partition, index in _grouped(partitions).items():
                columns = by_partition.setdefault(partition, {c: [] for c in COLUMNS})
                k = len(index)
                columns["request_id"] += [scored.request_id] * k
                columns["item_index"] += index
                columns["served_at"] += [scored.served_at] * k
                columns["latency_ms"] += [scored.latency_ms] * k
                columns["model_version"] += [scored.model_version] * k
                columns["role"] += [scored.role] * k
                columns["stage"] += [scored.stage] * k
                columns["returned"] += [scored.returned] * k
                columns["item_id"] += [str(scored.ids[i]) for i in index]
                columns["score"] += [float(scored.scores[i]) for i in index]
                columns["request"] += [requests[i] for i in index]
        first = dt.datetime.fromtimestamp(batch[0].served_at, dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        self.sequence += 1
        name = f"{first}-{self.source}-{self.sequence:08d}-{uuid.uuid4().hex[:6]}.parquet"
        for partition, columns in by_partition.items():
            buffer = io.BytesIO()
            pq.write_table(pa.table(columns), buffer)
            write_bytes_atomically(self.folder / partition / name, buffer.getvalue())
        rows = {p: len(c["request_id"]) for p, c in by_partition.items()}
        self.written += sum(rows.values())
        self.outside += rows.get(OUTSIDE, 0)

    def _describe(self, scored: Scored) -> tuple[list[str], list[str]]:
        """Each item's partition and its request fields as JSON (a one-item request's raw
        body as it came)."""
        partitions = [self.partition_of(i, scored.served_at) or OUTSIDE for i in scored.items]
        if scored.body is not None and len(scored.items) == 1:
            return partitions, [scored.body.decode()]
        return partitions, [item.model_dump_json() for item in scored.items]

    def figures(self) -> dict[str, int]:
        return {
            "pending": max(self.pending, 0) + self.in_flight + sum(len(s.ids) for s in self.retry),
            "written": self.written,
            "dropped": self.dropped,
            "outside_partitions": self.outside,
            "write_failures": self.failures,
        }


def _grouped(partitions: list[str]) -> dict[str, list[int]]:
    """The item positions of each partition (one group for the usual one-partition request)."""
    if len(set(partitions)) == 1:
        return {partitions[0]: list(range(len(partitions)))}
    groups: dict[str, list[int]] = {}
    for index, partition in enumerate(partitions):
        groups.setdefault(partition, []).append(index)
    return groups
