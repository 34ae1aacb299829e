"""The deploy smoke test matches the service's answers to feature rows by id, not by position."""

import pandas as pd
import pytest

from ml_assets import pipelines
from ml_assets.deployment.assets import SmokeTestFailed, _feature_rows

pytestmark = pytest.mark.unit

MODEL = pipelines.declaration("taxi").model


def test_answers_meet_their_feature_rows_by_id_in_any_order() -> None:
    rows = pd.DataFrame({MODEL.id_column: [7, 8, 9], "distance": [0.7, 0.8, 0.9]})
    matched = _feature_rows(rows, ["9", "7"], MODEL)  # the service answers ids as text
    assert matched["distance"].tolist() == [0.9, 0.7]


def test_an_answer_without_a_feature_row_fails_the_smoke_test() -> None:
    rows = pd.DataFrame({MODEL.id_column: [7, 8]})
    with pytest.raises(SmokeTestFailed, match=r"1 trip_ids that no trip_features row has"):
        _feature_rows(rows, ["7", "10"], MODEL)


def test_repeated_feature_ids_fail_the_smoke_test() -> None:
    rows = pd.DataFrame({MODEL.id_column: [7, 7]})
    with pytest.raises(SmokeTestFailed, match="repeats ids"):
        _feature_rows(rows, ["7"], MODEL)
