"""Shadow scoring in a process of its own, so a challenger never competes with the champion.

Scoring a shadow takes about as long as answering the request did: the feature columns, a
model call, the agreement, the prediction log's rows. In the service's process all of that
holds the interpreter lock the request handlers need, and costs the champion more throughput
than the scoring itself takes (measured in ``benchmarks/serving.py``). So the service only
queues each request's raw body and champion scores (``Shadowed``), and a thread of its sends
what gathered during each linger (``serving.shadow.Lingering``) to a child process, which
parses the bodies, scores them with the challenger on the columns the champion was scored on
(the same snapshot's lookups), logs the challenger's predictions in its own prediction log
files, and answers with the outcome (``serving.shadow.Outcome``): the service's stats and
``/metrics`` count it, and ``GET /model`` adds the child's prediction log figures to its own.

The child loads a challenger version and a snapshot when a batch first names them (or when a
reload asks it to, before the new rollout goes live). If the child dies while it scores a
batch, that batch counts as failed; the next batch starts another child. The child exits when
the service does, or when its pipe closes.
"""

import contextlib
import logging
import multiprocessing
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import numpy as np

from serving.challenger import Challenger, Outcome
from serving.shadow import Compared, Comparison, Lingering, ShadowScorer, runs

log = logging.getLogger("serving.shadow")
STARTUP_S = 120.0
"""How long the child may take to start and load a challenger."""


class Shadowed(NamedTuple):
    """One request answered by the champion, queued for the challenger in shadow."""

    challenger: Challenger
    lookups: Any
    """The champion's lookups (only its identity is used here: a reload changes it)."""
    snapshot: str | None
    """The partition of the snapshot the lookups were built from."""
    champion_threshold: float
    request_id: str
    served_at: float
    body: bytes
    ids: np.ndarray
    """The items' ids (as the champion's answer names them)."""
    scores: np.ndarray


@dataclass(frozen=True)
class ChildSetup:
    """What the child needs to score and log as the service would."""

    pipeline: str
    tracking_uri: str
    registry_uri: str
    online_store_url: str
    log_url: str | None
    log_flush_seconds: float
    log_flush_records: int


class ShadowDied(Exception):
    """The shadow process is gone or answered nothing."""


class ShadowProcess:
    """The service's side: queue requests, send batches to the child, count its outcomes."""

    def __init__(
        self,
        setup: ChildSetup,
        count: Callable[[Challenger, Outcome], None],
        linger_s: float = 0.2,
    ) -> None:
        self.setup, self.count = setup, count
        self.queue: Lingering[Shadowed] = Lingering(self._score, linger_s)
        self.talking = threading.Lock()
        """One exchange with the child at a time (the scoring thread's, or a reload's)."""
        self.child: multiprocessing.process.BaseProcess | None = None
        self.pipe: Connection | None = None
        self.log_figures: dict[str, int] = {}
        """The child's prediction log figures, as of its last answer."""

    def start(self) -> None:
        self.queue.start()

    def submit(self, shadowed: Shadowed) -> None:
        """Queue a request for its challenger; never blocks."""
        self.queue.submit(shadowed)

    def load(self, version: str, snapshot: str | None) -> None:
        """Have the child load ``version`` with ``snapshot``'s lookups (raises ``ShadowDied``
        or ``RuntimeError`` with the child's reason when it cannot)."""
        self._exchange(("load", version, snapshot))

    def settle(self, timeout_s: float = 5.0) -> bool:
        """Wait until every request submitted before the call is scored and counted, and the
        child's prediction log figures are fresh."""
        settled = self.queue.settle(timeout_s)
        if self.child is not None:
            try:
                self._exchange(("figures",))
            except (ShadowDied, RuntimeError) as error:
                log.warning("shadow process: no figures: %s", error)
        return settled

    def stop(self, timeout_s: float = 10.0) -> None:
        """Score what is queued, then stop the child (it flushes its prediction log)."""
        self.queue.stop(timeout_s)
        with self.talking:
            if self.pipe is not None and self.child is not None:
                with contextlib.suppress(OSError):
                    self.pipe.send(None)
                self.child.join(timeout_s)
            self._discard()

    def _score(self, batch: list[Shadowed]) -> None:
        for group in runs(batch):
            head = group[0]
            model = head.challenger.model
            message = (
                "score", model.version, head.snapshot, head.challenger.stage,
                head.champion_threshold, [(s.request_id, s.served_at, s.body) for s in group],
                np.concatenate([s.ids for s in group]), np.concatenate([s.scores for s in group]),
                [len(s.scores) for s in group],
            )  # fmt: skip
            try:
                outcome = self._exchange(message)
            except (ShadowDied, RuntimeError) as error:
                log.warning("challenger v%s failed to score: %s", model.version, error)
                outcome = Outcome(failed=len(group))
            self.count(head.challenger, outcome)

    def _exchange(self, message: tuple) -> Any:
        with self.talking:
            pipe = self._pipe()
            try:
                pipe.send(message)
                if not pipe.poll(STARTUP_S):
                    raise ShadowDied(f"no answer in {STARTUP_S:.0f} s")
                status, answer, figures = pipe.recv()
            except (EOFError, OSError, ShadowDied) as error:
                self._discard()
                raise ShadowDied(f"the shadow process died: {error}") from error
            self.log_figures = figures
            if status == "error":
                raise RuntimeError(answer)
            return answer

    def _pipe(self) -> Connection:
        if self.child is not None and not self.child.is_alive():  # died between batches
            log.warning("the shadow process exited (%s); starting another", self.child.exitcode)
            self._discard()
        if self.pipe is None:
            # spawned, not forked: the service's threads and the event loop must not be copied
            context = multiprocessing.get_context("spawn")
            self.pipe, theirs = context.Pipe()
            self.child = context.Process(
                target=serve, args=(theirs, self.setup), name="shadow-scorer", daemon=True
            )
            self.child.start()
            theirs.close()
        return self.pipe

    def _discard(self) -> None:
        if self.child is not None and self.child.is_alive():
            self.child.kill()
        if self.pipe is not None:
            self.pipe.close()
        self.child = self.pipe = None


# --- the child ------------------------------------------------------------------------------


def serve(pipe: Connection, setup: ChildSetup) -> None:
    """The child's loop: answer each message until told to stop or the pipe closes."""
    child = _Child(setup)
    try:
        while True:
            try:
                message = pipe.recv()
            except (EOFError, OSError):
                break
            if message is None:
                break
            try:
                answer = ("ok", child.handle(message), child.figures())
            except Exception as error:
                answer = ("error", f"{type(error).__name__}: {error}", child.figures())
            pipe.send(answer)
    finally:
        child.close()


class _Child:
    def __init__(self, setup: ChildSetup) -> None:
        import mlflow
        from pydantic import TypeAdapter

        from ml_assets import pipelines
        from resources.table_snapshots import TableSnapshots
        from serving.prediction_log import PredictionLog
        from serving.spec import served_model

        mlflow.set_tracking_uri(setup.tracking_uri)
        mlflow.set_registry_uri(setup.registry_uri)
        self.served = served = served_model(
            pipelines.declaration(setup.pipeline), pipelines.serving_hooks(setup.pipeline)
        )
        self.snapshots = TableSnapshots(setup.online_store_url)
        self.log = (
            PredictionLog(setup.log_url, served.pipeline, served.partition_of,
                          setup.log_flush_seconds, setup.log_flush_records)
            if setup.log_url is not None
            else None
        )  # fmt: skip
        if self.log is not None:
            self.log.start()
        self.one = TypeAdapter(served.request)
        self.many = TypeAdapter(list[served.request])  # type: ignore[name-defined]
        self.comparison = Comparison(
            served.task, served.rollout.agreement_tolerance, self.log, returned=False
        )
        self.scorer = ShadowScorer(served.columns, self.comparison)
        self.loaded: dict[tuple[str, str | None], tuple[Any, Any]] = {}

    def handle(self, message: tuple) -> Any:
        kind = message[0]
        if kind == "figures":
            return None
        if kind == "load":
            self._loaded(*message[1:])
            return None
        _, version, snapshot, stage, threshold, requests, ids, scores, counts = message
        model, lookups = self._loaded(version, snapshot)
        challenger = Challenger(model, stage)
        ends = np.cumsum(counts)
        batch = []
        for (request_id, served_at, body), end, count in zip(requests, ends, counts, strict=True):
            parsed = (self.many if body.lstrip()[:1] == b"[" else self.one).validate_json(body)
            items = parsed if isinstance(parsed, list) else [parsed]
            if len(items) != count:
                raise ValueError(f"request {request_id}: {len(items)} items, {count} scores")
            span = slice(end - count, end)
            batch.append(Compared(threshold, challenger, lookups, items, ids[span], scores[span],
                                  request_id, served_at, body))  # fmt: skip
        self.scorer.score(batch)
        return self.comparison.take()

    def _loaded(self, version: str, snapshot: str | None) -> tuple[Any, Any]:
        from serving.predictors import load_version

        key = (version, snapshot)
        if key not in self.loaded:
            served = self.served
            model = load_version(served.registered_model, version, served.features, served.task)
            lookups, asset, index = None, served.snapshot_asset, served.lookups
            if snapshot is not None and asset is not None and index is not None:
                lookups = index(self.snapshots.read(asset, snapshot))
            # this rollout's and the one before: a reload loads the new one while requests
            # of the old are still queued
            self.loaded = {**dict(list(self.loaded.items())[-1:]), key: (model, lookups)}
        return self.loaded[key]

    def figures(self) -> dict[str, int]:
        return self.log.figures() if self.log is not None else {}

    def close(self) -> None:
        if self.log is not None:
            self.log.stop()
