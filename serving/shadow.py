"""Shadow scoring off the request path, in batches.

A challenger in shadow never answers, so a request does not wait for it: the handler queues
the request's items with the feature lookups the champion used, and one thread scores what is
queued in batches: the batch's feature columns computed at once from all its items, then one
model call (a model call's fixed cost is most of a single request's scoring time, and the
columns of many items cost a fraction of as many requests' columns computed one by one). They
are the columns the champion was scored on, since the items and lookups are. What it finds goes
where the request path would have put it: the challenger's stats, ``/metrics`` and the
prediction log.

Latency is still measured per request: at most every ``sample_s``, the first request of a
batch is scored alone and timed, so the challenger's latency figures are those of
single-request scoring, as a canary would show them (at low traffic every request is). They
are the scoring thread's CPU time, because off the request path wall time would mostly
measure waiting for the interpreter lock while the handlers hold it.

Everything here holds the interpreter lock that the request handlers need, so it is done per
batch, not per request, wherever it can be: one model call, one agreement count, one update
of the stats. Each batch is what gathered during one linger (``linger_s``, 0.2 s): a
challenger's figures lag the traffic by that much (``settle`` waits for them), and at a
thousand requests a second a batch holds a couple of hundred requests, where each batch's
fixed cost is a few microseconds a request.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.challenger import Challenger
from serving.predictors import LoadedModel

log = logging.getLogger("serving.shadow")


@dataclass(frozen=True)
class Compared:
    """One request's champion scores, waiting for (or given) the challenger's."""

    champion: LoadedModel
    challenger: Challenger
    lookups: Any
    """The feature lookups the champion's columns were computed with."""
    items: Sequence[Any]
    ids: Sequence[Any]
    scores: np.ndarray
    """The champion's."""
    request_id: str
    served_at: float
    body: bytes | None


Columns = Callable[[Any, Sequence[Any]], Mapping[str, np.ndarray]]
"""The feature columns of items, computed with lookups (``ServedModel.columns``)."""
Recorder = Callable[[Sequence[Compared], Sequence[np.ndarray | None], float | None], None]
"""Records one challenger's scores of requests (None: it failed on that one) and, for a
request scored alone, its scoring time in ms."""


class ShadowScorer:
    """The thread that scores queued requests with their challenger (see the module)."""

    def __init__(
        self,
        columns: Columns,
        record: Recorder,
        linger_s: float = 0.2,
        sample_s: float = 0.1,
        max_batch: int = 1024,
    ) -> None:
        self.columns, self.record = columns, record
        self.linger_s, self.max_batch = linger_s, max_batch
        self.sample_s = sample_s
        self.sampled = -sample_s
        self.queue: deque[Compared] = deque()
        self.submitted = 0
        """Requests queued so far (only the event loop's thread submits)."""
        self.done = 0
        self.wake = threading.Event()
        self.settled = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, compared: Compared) -> None:
        """Queue a request for its challenger; never blocks."""
        self.submitted += 1
        self.queue.append(compared)
        self.wake.set()

    def settle(self, timeout_s: float = 5.0) -> bool:
        """Wait until every request submitted before the call is scored and recorded (what
        ``GET /model`` does, so its figures count every request answered before it)."""
        target = self.submitted
        with self.settled:
            return self.settled.wait_for(lambda: self.done >= target, timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Score what is queued and stop."""
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout_s)

    def _run(self) -> None:
        while not self.stopping or self.queue:
            self.wake.wait()
            self.wake.clear()
            time.sleep(self.linger_s)  # let a batch gather: one model call for many requests
            # only what gathered: requests arriving meanwhile wait for the next linger, or
            # under steady traffic every batch after the first would be a request or two
            gathered = len(self.queue)
            while gathered:
                batch = [self.queue.popleft() for _ in range(min(gathered, self.max_batch))]
                gathered -= len(batch)
                self._score(batch)
                with self.settled:
                    self.done += len(batch)
                    self.settled.notify_all()

    def _score(self, batch: list[Compared]) -> None:
        rest = batch
        if time.monotonic() - self.sampled >= self.sample_s:
            self.sampled = time.monotonic()
            first, rest = batch[0], batch[1:]
            self._recorded([first], *self._scored([first]))
        while rest:  # consecutive requests of one challenger and snapshot (a reload changes them)
            head = rest[0]
            same = next(
                (i for i, c in enumerate(rest)
                 if c.challenger is not head.challenger or c.lookups is not head.lookups),
                len(rest),
            )  # fmt: skip
            group, rest = rest[:same], rest[same:]
            self._recorded(group, self._scored(group)[0], None)  # timed only alone

    def _scored(self, group: list[Compared]) -> tuple[list[np.ndarray | None], float]:
        """Each request's challenger scores from one model call on the columns of all the
        group's items (None for a request whose scores are missing or not finite, or all of
        them if the call fails), and the CPU ms the call took."""
        challenger = group[0].challenger
        items = [item for c in group for item in c.items]
        try:
            columns = self.columns(group[0].lookups, items)
            began = time.thread_time()
            scores = challenger.model.predictor.predict(columns)
            elapsed = (time.thread_time() - began) * 1000
            if len(scores) != len(items):
                raise ValueError(f"{len(scores)} scores for {len(items)} items")
        except Exception as error:
            log.warning("challenger v%s failed to score: %s", challenger.model.version, error)
            return [None] * len(group), 0.0
        starts = np.cumsum([0, *(len(c.items) for c in group[:-1])])
        finite = np.logical_and.reduceat(np.isfinite(scores), starts)
        split = np.split(scores, starts[1:])
        return [s if ok else None for s, ok in zip(split, finite, strict=True)], elapsed

    def _recorded(
        self, group: list[Compared], scores: list[np.ndarray | None], ms: float | None
    ) -> None:
        try:
            self.record(group, scores, ms)
        except Exception:  # a recording bug must not stop shadow scoring
            log.exception("recording the challenger's scores failed")
