"""Optuna studies over the declared search space: journal file locally, PostgreSQL in production."""

import itertools
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_assets.contract.model_format import Features
from ml_assets.modeling.study import run_study
from ml_assets.modeling.trials import StudySettings, best_configuration
from ml_assets.pipelines import declaration

pytestmark = pytest.mark.integration

SPACE = declaration("flights").model.search_space
"""The flights pipeline's declared search space (three regression families)."""

FEATURES = Features(categorical=["carrier"], numeric=["distance", "dep_hour"])


def _data(rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "carrier": rng.choice(["AA", "UA", "DL"], rows),
            "distance": rng.uniform(100, 2500, rows),
            "dep_hour": rng.integers(5, 23, rows).astype(float),
        }
    )
    frame["arr_delay"] = (
        frame["dep_hour"] * 2 + (frame["carrier"] == "UA") * 10 + rng.normal(0, 5, rows)
    )
    frame["split"] = np.where(np.arange(rows) < rows * 0.7, "train", "validation")
    return frame


def _settings(storage: str, workers: int, n_trials: int = 4) -> StudySettings:
    return StudySettings(
        study_name=f"test-{uuid.uuid4().hex[:8]}", storage=storage, n_trials=n_trials,
        timeout_seconds=120, workers=workers, seed=7, n_startup_trials=2,
    )  # fmt: skip


def test_parallel_workers_share_one_journal_study(tmp_path: Path) -> None:
    settings = _settings(str(tmp_path / "study.journal"), workers=2, n_trials=6)
    study, numbers = run_study(
        settings, SPACE, FEATURES, _data(), "arr_delay", "regression", "mae", tmp_path
    )
    assert sorted(numbers) == list(range(6))
    assert {t.system_attrs.get("fixed_params") is None for t in study.trials} == {True}
    family, params = best_configuration(study.best_params)
    declared = {space.family: space for space in SPACE}
    assert set(params) == set(declared[family].params())
    # every trial reported intermediate values the pruner could act on
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert finished and all(t.intermediate_values for t in finished)
    # two processes really worked: trials overlapped in time
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_study_in_postgresql_continues_across_runs(postgres_url: str, tmp_path: Path) -> None:
    settings = _settings(postgres_url, workers=2, n_trials=2)
    data = _data()
    first, _ = run_study(
        settings, SPACE, FEATURES, data, "arr_delay", "regression", "mae", tmp_path
    )
    assert len(first.trials) == 2
    again, numbers = run_study(
        settings, SPACE, FEATURES, data, "arr_delay", "regression", "mae", tmp_path
    )
    assert len(again.trials) == 4 and sorted(numbers) == [2, 3]
