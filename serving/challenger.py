"""The challenger beside the champion: scored in shadow or answering as a canary, and watched.

The registry says what a service serves: the ``champion`` alias, and the ``challenger`` alias
when its version carries the tag ``rollout_stage`` = ``shadow`` or ``canary`` (set by the
rollout controller, so every replica that reloads serves the same rollout). A shadow is scored
on every request and logged, never returned (off the request path: ``serving.shadow``); a
canary answers the requests whose key falls in its declared share (sticky: the same key always
gets the same version), scored on the request path, and is scored in shadow on the others.
Either way both versions score the same feature columns, so the challenger's
error rate, its scoring latency and its agreement with the champion are measured on the same
requests, from the moment it was loaded.
"""

import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml_assets.contract.names import CANARY
from serving.predictors import LoadedModel

BUCKETS = 10_000


def in_canary(key: str, share: float) -> bool:
    """Whether requests with ``key`` go to the canary: a stable hash of the key, so a key keeps
    its version for the whole stage, and about ``share`` of all keys do."""
    return zlib.crc32(key.encode()) % BUCKETS < share * BUCKETS


def agreeing(
    task: str,
    champion: np.ndarray,
    challenger: np.ndarray,
    thresholds: tuple[float, float],
    tolerance: float,
) -> int:
    """How many items the two versions agree on: a regression within ``tolerance``, a
    classifier with the same decision at each version's own threshold."""
    if task == "binary_classification":
        return int(np.sum((champion >= thresholds[0]) == (challenger >= thresholds[1])))
    return int(np.sum(np.abs(champion - challenger) <= tolerance))


@dataclass
class Outcome:
    """What a challenger did on some requests."""

    requests: int = 0
    """Requests it scored."""
    answered: int = 0
    """Of those, the requests its predictions answered (as the canary)."""
    failed: int = 0
    items: int = 0
    agreeing: int = 0
    """Items on which it agreed with the champion."""
    latency_ms: float | None = None
    """The scoring time of a request scored alone (``serving.shadow`` scores most shadow
    requests in batches), if one was."""


@dataclass
class ChallengerStats:
    """What the challenger did since it was loaded (this service only)."""

    since: float = field(default_factory=time.time)
    requests: int = 0
    """Requests it scored (in shadow or as the canary)."""
    answered: int = 0
    """Of those, the requests it answered (as the canary)."""
    errors: int = 0
    items: int = 0
    agreeing: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=5000))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, outcome: Outcome) -> None:
        with self.lock:
            self.requests += outcome.requests + outcome.failed
            self.answered += outcome.answered
            self.errors += outcome.failed
            self.items += outcome.items
            self.agreeing += outcome.agreeing
            if outcome.latency_ms is not None:
                self.latencies_ms.append(outcome.latency_ms)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            p50, p95 = (
                (float(np.percentile(self.latencies_ms, q)) for q in (50, 95))
                if self.latencies_ms
                else (None, None)
            )
            return {
                "since": self.since,
                "requests": self.requests,
                "answered": self.answered,
                "errors": self.errors,
                "error_rate": self.errors / self.requests if self.requests else 0.0,
                "items": self.items,
                "agreement": self.agreeing / self.items if self.items else None,
                "latency_p50_ms": p50,
                "latency_p95_ms": p95,
            }


@dataclass(frozen=True)
class Challenger:
    model: LoadedModel
    stage: str
    """``shadow`` or ``canary``."""
    stats: ChallengerStats = field(default_factory=ChallengerStats)

    def answers(self, key: Any, share: float) -> bool:
        """Whether the challenger's predictions are the answer to a request with ``key``."""
        return self.stage == CANARY and in_canary(str(key), share)
