"""Shadow scoring off the request path, in batches.

A challenger in shadow never answers, so a request does not wait for it: the handler queues
the feature columns the champion was scored on, and one thread scores what is queued in
batches, one model call per batch instead of one per request (a model call's fixed cost is
most of a single request's scoring time). What it finds goes where the request path would
have put it: the challenger's stats, ``/metrics`` and the prediction log.

Latency is still measured per request: at most every ``sample_s``, the first request of a
batch is scored alone and timed, so the challenger's latency figures are those of
single-request scoring, as a canary would show them (at low traffic every request is). They
are the scoring thread's CPU time, because off the request path wall time would mostly
measure waiting for the interpreter lock while the handlers hold it.

Everything here holds the interpreter lock that the request handlers need, so it is done per
batch, not per request, wherever it can be: one model call, one agreement count, one update
of the stats.
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
    columns: Mapping[str, np.ndarray]
    items: Sequence[Any]
    ids: Sequence[Any]
    scores: np.ndarray
    """The champion's."""
    request_id: str
    served_at: float
    body: bytes | None


Recorder = Callable[[Sequence[Compared], Sequence[np.ndarray | None], float | None], None]
"""Records one challenger's scores of requests (None: it failed on that one) and, for a
request scored alone, its scoring time in ms."""


def score_alone(challenger: Challenger, columns: Mapping[str, np.ndarray], n: int):
    """The challenger's scores of one request's ``n`` items and the CPU ms they took; None for
    scores that are missing or not finite (a failure, counted by the caller)."""
    began = time.thread_time()
    try:
        scores = challenger.model.predictor.predict(columns)
    except Exception as error:
        log.warning("challenger v%s failed to score: %s", challenger.model.version, error)
        return None, (time.thread_time() - began) * 1000
    elapsed = (time.thread_time() - began) * 1000
    return (scores if len(scores) == n and np.all(np.isfinite(scores)) else None), elapsed


class ShadowScorer:
    """The thread that scores queued requests with their challenger (see the module)."""

    def __init__(
        self,
        record: Recorder,
        linger_s: float = 0.05,
        sample_s: float = 0.1,
        max_batch: int = 1024,
    ) -> None:
        self.record, self.linger_s, self.max_batch = record, linger_s, max_batch
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
            while self.queue:
                batch = [self.queue.popleft() for _ in range(min(len(self.queue), self.max_batch))]
                self._score(batch)
                with self.settled:
                    self.done += len(batch)
                    self.settled.notify_all()

    def _score(self, batch: list[Compared]) -> None:
        rest = batch
        if time.monotonic() - self.sampled >= self.sample_s:
            self.sampled = time.monotonic()
            first, rest = batch[0], batch[1:]
            scores, ms = score_alone(first.challenger, first.columns, len(first.items))
            self._recorded([first], [scores], ms)
        while rest:  # consecutive requests of one challenger (a reload may change it)
            same = next(
                (i for i, c in enumerate(rest) if c.challenger is not rest[0].challenger),
                len(rest),
            )
            group, rest = rest[:same], rest[same:]
            self._recorded(group, _scored_together(group), None)

    def _recorded(
        self, group: list[Compared], scores: list[np.ndarray | None], ms: float | None
    ) -> None:
        try:
            self.record(group, scores, ms)
        except Exception:  # a recording bug must not stop shadow scoring
            log.exception("recording the challenger's scores failed")


def _scored_together(group: list[Compared]) -> list[np.ndarray | None]:
    """Each request's challenger scores from one model call on their joined columns (None
    for a request whose scores are missing or not finite, or all of them if the call fails)."""
    challenger = group[0].challenger
    names = group[0].columns.keys()
    joined = {n: np.concatenate([np.asarray(c.columns[n]) for c in group]) for n in names}
    sizes = [len(c.items) for c in group]
    try:
        scores = challenger.model.predictor.predict(joined)
        if len(scores) != sum(sizes):
            raise ValueError(f"{len(scores)} scores for {sum(sizes)} items")
    except Exception as error:
        log.warning("challenger v%s failed to score: %s", challenger.model.version, error)
        return [None] * len(group)
    split = np.split(scores, np.cumsum(sizes)[:-1])
    return [s if np.all(np.isfinite(s)) else None for s in split]
