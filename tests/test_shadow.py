"""Shadow scoring off the request path (``serving.shadow``): queued requests are scored in
batches, one model call per batch on columns computed for all its items; a batch's first
request is scored alone and timed (at most every ``sample_s``); a failure is the failing
requests' alone; a reload's new challenger is never given another's requests, nor a new
snapshot's lookups another's; ``settle`` waits for everything submitted before it."""

import threading
import time
from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_assets.contract.names import SHADOW
from serving.challenger import Challenger
from serving.predictors import LoadedModel
from serving.shadow import Compared, Comparison, Lingering, ShadowScorer

pytestmark = pytest.mark.unit


class Doubling:
    """A predictor scoring ``2 x``, and what it was called with; ``nan_at`` gives NaN there."""

    kind = "test"

    def __init__(
        self, nan_at: float | None = None, fails: bool = False, takes_s: float = 0.0
    ) -> None:
        self.calls: list[int] = []
        self.nan_at, self.fails, self.takes_s = nan_at, fails, takes_s

    def inputs(self, columns: Mapping[str, np.ndarray]):
        return columns["x"]

    def predict_inputs(self, inputs) -> np.ndarray:
        if self.fails:
            raise RuntimeError("broken model")
        self.calls.append(len(inputs))
        time.sleep(self.takes_s)
        scores = 2.0 * np.asarray(inputs, dtype=float)
        scores[np.asarray(inputs) == self.nan_at] = np.nan
        return scores

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.predict_inputs(self.inputs(columns))


def _columns(lookups: float | None, items: list[float]) -> dict[str, np.ndarray]:
    """Feature ``x``: an item's value, plus the lookups' offset (a snapshot's stand-in)."""
    return {"x": np.asarray(items, dtype=float) + (lookups or 0.0)}


def _challenger(predictor: Doubling) -> Challenger:
    return Challenger(LoadedModel("m", "2", "run", None, predictor), SHADOW)  # type: ignore[arg-type]


def _compared(
    challenger: Challenger, values: list[float], n: int, lookups: float | None = None
) -> Compared:
    x = _columns(lookups, values)["x"]
    return Compared(0.5, challenger, lookups, list(values), [f"id{n}"] * len(values),
                    2.0 * x, f"r{n}", 0.0, b"")  # fmt: skip


class Recorded:
    def __init__(self) -> None:
        self.by_request: dict[str, tuple[np.ndarray | None, float | None]] = {}
        self.lock = threading.Lock()

    def __call__(self, group, scores, ms) -> None:
        assert ms is None or len(group) == 1  # only a request scored alone is timed
        assert len({id(c.challenger) for c in group}) == 1
        with self.lock:
            for compared, s in zip(group, scores, strict=True):
                assert compared.request_id not in self.by_request
                self.by_request[compared.request_id] = (s, ms)


def _scorer(recorded: Recorded, linger_s: float, sample_s: float = 0.1) -> Lingering[Compared]:
    return Lingering(ShadowScorer(_columns, recorded, sample_s).score, linger_s)


def _scored(requests: list[Compared]) -> Recorded:
    """Submit ``requests`` at once (as a burst of traffic would) and settle."""
    recorded = Recorded()
    scorer = _scorer(recorded, linger_s=0.05)
    for compared in requests:
        scorer.submit(compared)
    scorer.start()
    assert scorer.settle(timeout_s=10)
    scorer.stop()
    return recorded


def test_a_burst_is_scored_in_one_call_beside_the_timed_first_request() -> None:
    model = Doubling()
    challenger = _challenger(model)
    recorded = _scored([_compared(challenger, [float(n), n + 0.5], n) for n in range(100)])
    assert model.calls == [2, 198]  # the first alone (timed), the other 99 together
    first_ms = recorded.by_request["r0"][1]
    assert first_ms is not None and first_ms >= 0
    assert all(recorded.by_request[f"r{n}"][1] is None for n in range(1, 100))
    for n in range(100):
        scores, _ = recorded.by_request[f"r{n}"]
        np.testing.assert_array_equal(scores, [2.0 * n, 2 * n + 1.0])


def test_a_non_finite_score_fails_its_request_only_and_a_broken_model_all() -> None:
    challenger = _challenger(Doubling(nan_at=7.0))
    recorded = _scored([_compared(challenger, [float(n)], n) for n in range(10)])
    assert [n for n in range(10) if recorded.by_request[f"r{n}"][0] is None] == [7]
    broken = _challenger(Doubling(fails=True))
    recorded = _scored([_compared(broken, [float(n)], n) for n in range(5)])
    assert all(scores is None for scores, _ in recorded.by_request.values())
    assert len(recorded.by_request) == 5


def test_each_challenger_scores_only_its_own_requests() -> None:
    """A reload swaps the challenger while requests of the old one are queued."""
    old, new = Doubling(), Doubling()
    first, second = _challenger(old), _challenger(new)
    requests = [_compared(first if n < 4 or n > 6 else second, [float(n)], n) for n in range(10)]
    recorded = _scored(requests)
    assert old.calls == [1, 3, 3] and new.calls == [3]
    assert len(recorded.by_request) == 10


def test_each_snapshot_scores_only_its_own_requests() -> None:
    """A reload swaps the snapshot (same challenger): each request's columns are computed with
    the lookups the champion used for it."""
    model = Doubling()
    challenger = _challenger(model)
    offsets = [None if n < 5 else 100.0 for n in range(8)]
    requests = [_compared(challenger, [float(n)], n, offsets[n]) for n in range(8)]
    recorded = _scored(requests)
    assert model.calls == [1, 4, 3]
    for n in range(8):
        np.testing.assert_array_equal(
            recorded.by_request[f"r{n}"][0], [2 * (n + (offsets[n] or 0))]
        )


def test_steady_traffic_is_scored_in_batches_that_each_gathered_for_the_linger() -> None:
    """Requests arriving while a batch is scored wait for the next linger: were they scored at
    once, steady traffic would be scored a request or two per model call."""
    model = Doubling(takes_s=0.005)
    challenger = _challenger(model)
    recorded, linger_s = Recorded(), 0.05
    scorer = _scorer(recorded, linger_s=linger_s, sample_s=1e9)
    scorer.start()
    began = time.monotonic()
    for n in range(300):  # a request a millisecond: five arrive while a batch is scored
        scorer.submit(_compared(challenger, [float(n)], n))
        time.sleep(0.001)
    assert scorer.settle(timeout_s=10)
    elapsed = time.monotonic() - began
    scorer.stop()
    assert len(recorded.by_request) == 300
    assert len(model.calls) <= elapsed / linger_s + 2  # one per linger, and the timed first


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=40), st.floats(0, 0.003))
def test_every_request_is_recorded_once_with_its_own_scores(sizes: list[int], pause: float) -> None:
    """Whatever the batching (requests arriving while a batch is scored), each request's
    scores are exactly its items' and ``settle`` returns only once all are recorded."""
    challenger = _challenger(Doubling())
    recorded = Recorded()
    scorer = _scorer(recorded, linger_s=0.001)
    scorer.start()
    for n, size in enumerate(sizes):
        scorer.submit(_compared(challenger, [float(n * 10 + i) for i in range(size)], n))
        time.sleep(pause)
    assert scorer.settle(timeout_s=10)
    assert len(recorded.by_request) == len(sizes)
    for n, size in enumerate(sizes):
        expected = [2.0 * (n * 10 + i) for i in range(size)]
        np.testing.assert_array_equal(recorded.by_request[f"r{n}"][0], expected)
    scorer.stop()


def test_a_failed_scoring_counts_as_an_error_with_no_latency() -> None:
    """A request the challenger failed on, even the one scored alone and timed, adds an error
    and no latency figure; one it scored adds its latency."""
    challenger = _challenger(Doubling())
    comparison = Comparison("regression", 0.01, None, returned=False)
    comparison([_compared(challenger, [1.0], 0)], [None], 0.0)
    failed = comparison.take()
    assert (failed.failed, failed.requests, failed.latency_ms) == (1, 0, None)
    comparison([_compared(challenger, [1.0], 1)], [np.array([2.0])], 0.4)
    scored = comparison.take()
    assert (scored.failed, scored.requests, scored.agreeing, scored.latency_ms) == (0, 1, 1, 0.4)
