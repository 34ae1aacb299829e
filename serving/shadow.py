"""Shadow scoring in batches: the queue that gathers them and the scorer of a batch.

A challenger in shadow never answers, so a request does not wait for it: ``Lingering`` queues
what the handler hands it and gives what gathered during one linger (``linger_s``, 0.2 s) to
its consumer as one batch (in the service, the shadow process: ``serving.shadow_process``).
``ShadowScorer`` scores a batch with the feature lookups the champion used: the batch's
feature columns computed at once from all its items, then one model call (a model call's fixed
cost is most of a single request's scoring time, and the columns of many items cost a fraction
of as many requests' columns computed one by one). They are the columns the champion was
scored on, since the items and lookups are. ``Comparison`` records what it finds: the outcome
the challenger's stats and ``/metrics`` count, and its rows of the prediction log.

Latency is still measured per request: at most every ``sample_s``, the first request of a
batch is scored alone and timed, so the challenger's latency figures are those of
single-request scoring, as a canary would show them (at low traffic every request is). They
are the scoring thread's CPU time, so that another process's or thread's work does not count.

A challenger's figures lag the traffic by a linger (``settle`` cuts it short and waits for
them); at a thousand requests a second a batch holds a couple of hundred requests, where each
batch's fixed cost is a few microseconds a request.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from ml_assets.contract.names import CHALLENGER
from serving.challenger import Challenger, Outcome, agreeing
from serving.prediction_log import PredictionLog, Scored

log = logging.getLogger("serving.shadow")
T = TypeVar("T")


@dataclass(frozen=True)
class Compared:
    """One request's champion scores, waiting for (or given) the challenger's."""

    champion_threshold: float
    """The champion's decision threshold (classifiers), for the agreement."""
    challenger: Challenger
    lookups: Any
    """The feature lookups the champion's columns were computed with."""
    items: Sequence[Any]
    ids: Sequence[Any]
    scores: np.ndarray
    """The champion's."""
    request_id: str
    served_at: float
    body: bytes
    """The raw request body."""


Columns = Callable[[Any, Sequence[Any]], Mapping[str, np.ndarray]]
"""The feature columns of items, computed with lookups (``ServedModel.columns``)."""
Recorder = Callable[[Sequence[Compared], Sequence[np.ndarray | None], float | None], None]
"""Records one challenger's scores of requests (None: it failed on that one) and, for a
request scored alone, its scoring time in ms."""


class Queued(Protocol):
    """A request queued for its challenger, scored with the champion's lookups."""

    @property
    def challenger(self) -> Challenger: ...

    @property
    def lookups(self) -> Any: ...


Q = TypeVar("Q", bound=Queued)


def runs(batch: list[Q]) -> Iterator[list[Q]]:
    """The batch's runs of consecutive requests of one challenger and snapshot (a reload
    changes them: a new challenger is never given another's requests, nor a new snapshot's
    lookups another's)."""
    while batch:
        head = batch[0]
        same = next(
            (i for i, c in enumerate(batch)
             if c.challenger is not head.challenger or c.lookups is not head.lookups),
            len(batch),
        )  # fmt: skip
        yield batch[:same]
        batch = batch[same:]


class Lingering(Generic[T]):
    """The thread that hands what is submitted to ``process`` in batches, each what gathered
    during one linger (see the module); ``settle`` waits for what was submitted before it."""

    def __init__(
        self,
        process: Callable[[list[T]], None],
        linger_s: float = 0.2,
        max_batch: int = 1024,
    ) -> None:
        self.process, self.linger_s, self.max_batch = process, linger_s, max_batch
        self.queue: deque[T] = deque()
        self.submitted = 0
        """Items queued so far (only the event loop's thread submits)."""
        self.done = 0
        self.wake = threading.Event()
        self.hurry = threading.Event()
        """Set by ``settle``: score what is queued now, without lingering."""
        self.settled = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, item: T) -> None:
        """Queue an item; never blocks."""
        self.submitted += 1
        self.queue.append(item)
        if not self.wake.is_set():  # an Event's set takes a lock: not once per request
            self.wake.set()

    def settle(self, timeout_s: float = 5.0) -> bool:
        """Wait until every item submitted before the call is processed (what ``GET /model``
        does, so its figures count every request answered before it)."""
        target = self.submitted
        self.hurry.set()
        with self.settled:
            return self.settled.wait_for(lambda: self.done >= target, timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Process what is queued and stop."""
        self.stopping = True
        self.hurry.set()
        self.wake.set()
        self.thread.join(timeout_s)

    def _run(self) -> None:
        while not self.stopping or self.queue:
            self.wake.wait()
            self.wake.clear()
            self.hurry.wait(self.linger_s)  # let a batch gather: one model call for many
            self.hurry.clear()
            # only what gathered: requests arriving meanwhile wait for the next linger, or
            # under steady traffic every batch after the first would be a request or two
            gathered = len(self.queue)
            while gathered:
                batch = [self.queue.popleft() for _ in range(min(gathered, self.max_batch))]
                gathered -= len(batch)
                try:
                    self.process(batch)
                except Exception:  # a bug must not stop the thread, nor leave settle waiting
                    log.exception("processing %d queued requests failed", len(batch))
                with self.settled:
                    self.done += len(batch)
                    self.settled.notify_all()


class ShadowScorer:
    """Scores batches of requests with their challenger (see the module)."""

    def __init__(self, columns: Columns, record: Recorder, sample_s: float = 0.1) -> None:
        self.columns, self.record = columns, record
        self.sample_s = sample_s
        self.sampled = -sample_s

    def score(self, batch: list[Compared]) -> None:
        rest = batch
        if time.monotonic() - self.sampled >= self.sample_s:
            self.sampled = time.monotonic()
            first, rest = batch[0], batch[1:]
            self._recorded([first], *self._scored([first]))
        for group in runs(rest):
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


class Comparison:
    """A ``Recorder``: totals the challenger's outcome on the requests it is given and puts its
    predictions in the prediction log (``returned``: whether they were the answer)."""

    def __init__(
        self, task: str, tolerance: float, log: PredictionLog | None, returned: bool
    ) -> None:
        self.task, self.tolerance, self.log, self.returned = task, tolerance, log, returned
        self.outcome = Outcome()

    def __call__(
        self, group: Sequence[Compared], scores: Sequence[np.ndarray | None], ms: float | None
    ) -> None:
        done = [(c, s) for c, s in zip(group, scores, strict=True) if s is not None]
        outcome = self.outcome
        outcome.failed += len(group) - len(done)
        if not done:  # a failed scoring has no latency to count
            return
        if ms is not None:
            outcome.latency_ms = ms
        challenger = group[0].challenger
        outcome.requests += len(done)
        outcome.answered += len(done) if self.returned else 0
        outcome.items += sum(len(c.items) for c, _ in done)
        outcome.agreeing += agreeing(
            self.task,
            np.concatenate([c.scores for c, _ in done]),
            np.concatenate([s for _, s in done]),
            (group[0].champion_threshold, challenger.model.threshold),
            self.tolerance,
        )
        if self.log is None:
            return
        version, stage = challenger.model.version, challenger.stage
        for c, s in done:
            one = c.body if len(c.items) == 1 and c.body.lstrip()[:1] != b"[" else None
            self.log.append(
                Scored(c.request_id, c.served_at, ms or 0.0, version, CHALLENGER, stage,
                       self.returned, c.items, c.ids, s, one)
            )  # fmt: skip

    def take(self) -> Outcome:
        """The outcome since the last ``take``."""
        outcome, self.outcome = self.outcome, Outcome()
        return outcome
