"""The deploy smoke test matches the service's answers to feature rows by id, not by position,
and measures the latency of single requests in rounds until one keeps the budget."""

import pandas as pd
import pytest

from ml_assets import pipelines
from ml_assets.deployment.smoke import LATENCY_ROUNDS, SmokeTestFailed, feature_rows, latency

pytestmark = pytest.mark.unit

MODEL = pipelines.declaration("taxi").model


def test_answers_meet_their_feature_rows_by_id_in_any_order() -> None:
    rows = pd.DataFrame({MODEL.id_column: [7, 8, 9], "distance": [0.7, 0.8, 0.9]})
    matched = feature_rows(rows, ["9", "7"], MODEL)  # the service answers ids as text
    assert matched["distance"].tolist() == [0.9, 0.7]


def test_an_answer_without_a_feature_row_fails_the_smoke_test() -> None:
    rows = pd.DataFrame({MODEL.id_column: [7, 8]})
    with pytest.raises(SmokeTestFailed, match=r"1 trip_ids that no trip_features row has"):
        feature_rows(rows, ["7", "10"], MODEL)


def test_repeated_feature_ids_fail_the_smoke_test() -> None:
    rows = pd.DataFrame({MODEL.id_column: [7, 7]})
    with pytest.raises(SmokeTestFailed, match="repeats ids"):
        feature_rows(rows, ["7"], MODEL)


class _Endpoint:
    """Single requests that take ``seconds[n]`` each in round ``n``."""

    def __init__(self, *seconds: float) -> None:
        self.rounds = list(seconds)

    def latencies(self, items: list, version: str) -> list[float]:
        return [self.rounds.pop(0)] * len(items)


def test_a_stalled_round_of_latency_is_measured_again() -> None:
    endpoint = _Endpoint(0.2, 0.004, 0.001)
    assert latency(endpoint, [{}] * 20, "1", budget_ms=50) == (4.0, 4.0, 2)  # type: ignore[arg-type]


def test_a_model_slow_in_every_round_keeps_its_best_round() -> None:
    endpoint = _Endpoint(0.3, 0.1, 0.2)
    p50, p95, rounds = latency(endpoint, [{}] * 20, "1", budget_ms=50)  # type: ignore[arg-type]
    assert (p50, p95, rounds) == (100.0, 100.0, LATENCY_ROUNDS)
