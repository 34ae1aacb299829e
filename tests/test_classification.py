"""Binary classification in the model layer: families, scores, metrics, thresholds, ONNX, skops
and studies, on a small frame built here (a string categorical, numeric columns with gaps)."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from ml_assets.contract.declaration import Threshold
from ml_assets.contract.model_format import SKOPS_TRUSTED_TYPES, Features, onnx_scores, scores
from ml_assets.contract.search_space import FamilySpace
from ml_assets.modeling.estimators import STATISTICAL, build_pipeline, staged_fits
from ml_assets.modeling.evaluation import scaled_errors
from ml_assets.modeling.metrics import (
    bar,
    choose_threshold,
    is_better,
    metric_value,
    metrics,
    smape,
)
from ml_assets.modeling.onnx_export import export_onnx
from ml_assets.modeling.plots import (
    confusion_figure,
    precision_recall_figure,
    reliability_figure,
    roc_figure,
    save_figure,
)
from ml_assets.modeling.study import run_study
from ml_assets.modeling.trials import StudySettings, best_configuration

pytestmark = pytest.mark.unit

CLASSIFY = "binary_classification"
FEATURES = Features(categorical=["company"], numeric=["distance", "hour"])
COLUMNS = [*FEATURES.categorical, *FEATURES.numeric]
PARAMS = {
    "hist_gradient_boosting": {"max_iter": 40},
    "random_forest": {"n_estimators": 20, "min_samples_leaf": 5},
    "ridge": {"alpha": 1.0},
    "logistic_regression": {"C": 1.0},
}
SPACE = TypeAdapter(list[FamilySpace]).validate_python(
    [
        {
            "family": "hist_gradient_boosting",
            "max_iter": {"type": "int", "low": 20, "high": 40, "step": 10},
            "learning_rate": {"type": "float", "low": 0.05, "high": 0.3, "log": True},
        },
        {
            "family": "random_forest",
            "n_estimators": {"type": "int", "low": 8, "high": 16, "step": 4},
            "max_features": {"type": "categorical", "choices": ["sqrt", 0.5]},
        },
        {"family": "logistic_regression", "C": {"type": "float", "low": 0.01, "high": 10.0}},
    ]
)


FITTED = [(task, family) for task, family in SKOPS_TRUSTED_TYPES if family not in STATISTICAL]
"""The estimators' (task, family) pairs: sklearn pipelines (the statistical forecasters read no
feature and are saved as a forecast path: tests/test_forecasters.py)."""


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """600 trips: a company (a rare one, some missing), a distance (some missing), an hour; the
    tip (0/1) depends on all three. The first 420 rows train, the rest validate."""
    rng = np.random.default_rng(0)
    rows = 600
    company = rng.choice(["acme", "blue", "city", "rare"], rows, p=[0.5, 0.3, 0.19, 0.01])
    data = pd.DataFrame(
        {
            "company": pd.Series(company, dtype=object),
            "distance": rng.gamma(2.0, 2.0, rows),
            "hour": rng.integers(0, 24, rows).astype(float),
        }
    )
    logit = 0.4 * data["distance"] - 1.5 + (data["company"] == "blue") - 0.05 * data["hour"]
    data["tip"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    data["fare"] = 3 * data["distance"] + rng.normal(0, 1, rows)
    data.loc[rng.random(rows) < 0.05, "company"] = np.nan
    data.loc[rng.random(rows) < 0.1, "distance"] = np.nan
    data["split"] = np.where(np.arange(rows) < 420, "train", "validation")
    return data


@pytest.fixture(scope="module")
def fitted(frame: pd.DataFrame) -> dict:
    """A fitted pipeline of every (task, family) the estimators module builds."""
    train = frame[frame["split"] == "train"]
    pipelines = {}
    for task, family in FITTED:
        target = "tip" if task == CLASSIFY else "fare"
        pipeline = build_pipeline(family, PARAMS[family], FEATURES, task)
        pipelines[task, family] = pipeline.fit(train[COLUMNS], train[target])
    return pipelines


def _unseen(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame's feature rows plus rows of a company never seen and of a missing distance."""
    extra = pd.DataFrame({"company": ["newco", np.nan], "distance": [np.nan, 4.0], "hour": 3.0})
    return pd.concat([frame[COLUMNS], extra], ignore_index=True)


CLASSIFIERS = ["hist_gradient_boosting", "random_forest", "logistic_regression"]


@pytest.mark.parametrize("family", CLASSIFIERS)
def test_each_classifier_scores_positive_class_probabilities(
    family: str, fitted: dict, frame: pd.DataFrame
) -> None:
    pipeline = fitted[CLASSIFY, family]
    rows = _unseen(frame)
    p = scores(pipeline, rows, CLASSIFY)
    assert p.shape == (len(rows),) and np.all((p >= 0) & (p <= 1))
    np.testing.assert_array_equal(p, pipeline.predict_proba(rows)[:, 1])
    valid = frame[frame["split"] == "validation"]
    # better than chance on rows it did not see
    assert (
        metrics(CLASSIFY, valid["tip"], scores(pipeline, valid[COLUMNS], CLASSIFY))["roc_auc"] > 0.6
    )


def test_a_family_is_built_only_for_the_tasks_it_learns() -> None:
    with pytest.raises(ValueError, match="ridge"):
        build_pipeline("ridge", {}, FEATURES, CLASSIFY)
    with pytest.raises(ValueError, match="logistic_regression"):
        build_pipeline("logistic_regression", {}, FEATURES, "regression")
    with pytest.raises(ValueError, match="unknown task"):
        scores(None, None, "ranking")


@pytest.mark.parametrize(
    ("family", "sizes"),
    [("hist_gradient_boosting", [10, 20, 30, 40]), ("random_forest", [5, 10, 15, 20])],
)
def test_classifiers_fit_in_growing_stages(
    family: str, sizes: list[int], frame: pd.DataFrame
) -> None:
    train = frame[frame["split"] == "train"]
    pipeline = build_pipeline(family, PARAMS[family], FEATURES, CLASSIFY)
    model = pipeline.named_steps["model"]
    grown = [
        (stage, model.n_iter_ if family == "hist_gradient_boosting" else len(model.estimators_))
        for stage in staged_fits(family, pipeline, train[COLUMNS], train["tip"])
    ]
    assert grown == list(enumerate(sizes))


def test_classification_metrics_on_a_hand_computed_example() -> None:
    y, p = [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8]
    values = metrics(CLASSIFY, y, p, threshold=0.5)
    assert values == pytest.approx(
        {
            "roc_auc": 3 / 4,  # 3 of the 4 (positive, negative) pairs are ordered right
            "pr_auc": 0.5 * 1 + 0.5 * 2 / 3,  # precision 1 at recall 1/2, 2/3 at recall 1
            "log_loss": -(math.log(0.9) + math.log(0.4) + math.log(0.4) + math.log(0.8)) / 4,
            "brier": (0.01 + 0.36 + 0.36 + 0.04) / 4,
            "accuracy": 0.5,  # decides [0, 1, 0, 1]
            "f1": 0.5,  # one true positive, one false positive, one false negative
        }
    )
    assert set(metrics(CLASSIFY, y, p)) == {"roc_auc", "pr_auc", "log_loss", "brier"}
    # one class only: the log loss and Brier score still exist
    assert metric_value("log_loss", [1, 1], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert metric_value("brier", [1, 1], [0.5, 0.5]) == pytest.approx(0.25)


def test_regression_metrics_and_no_threshold_for_them() -> None:
    assert metrics("regression", [1, 2, 3], [1, 2, 5]) == pytest.approx(
        {"mae": 2 / 3, "rmse": math.sqrt(4 / 3), "smape": (2 * 2 / 8) / 3, "r2": 1 - 4 / 2}
    )
    with pytest.raises(ValueError, match="threshold"):
        metrics("regression", [1, 2], [1, 2], threshold=0.5)


def test_max_f1_threshold_on_a_known_example() -> None:
    y, p = [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8]
    # F1 deciding positive from each score up: 2/3 (0.1), 0.8 (0.4), 0.5 (0.6), 2/3 (0.8)
    threshold = choose_threshold(y, p, Threshold(rule="max_f1"))
    assert threshold == 0.4
    assert metrics(CLASSIFY, y, p, threshold)["f1"] == pytest.approx(0.8)
    assert choose_threshold(y, p, Threshold(rule="fixed", value=0.3)) == 0.3
    with pytest.raises(ValueError, match="no positive"):
        choose_threshold([0, 0], [0.2, 0.7], Threshold())


def test_better_and_bars_follow_the_metric_direction() -> None:
    assert is_better(CLASSIFY, "roc_auc", 0.8, 0.7) and not is_better(CLASSIFY, "roc_auc", 0.7, 0.7)
    assert is_better(CLASSIFY, "log_loss", 0.3, 0.4) and is_better("regression", "r2", 0.5, 0.4)
    assert bar("regression", "mae", 10.0, 0.02) == pytest.approx(9.8)
    assert bar(CLASSIFY, "roc_auc", 0.5, 0.02) == pytest.approx(0.51)
    assert bar(CLASSIFY, "log_loss", 0.5, -0.1) == pytest.approx(0.55)  # slack: 10% worse


@pytest.mark.parametrize(("task", "family"), FITTED)
def test_onnx_export_scores_what_the_pipeline_scores(
    task: str, family: str, fitted: dict, frame: pd.DataFrame
) -> None:
    import onnxruntime

    pipeline = fitted[task, family]
    exported = export_onnx(pipeline, FEATURES, frame[COLUMNS], task)
    assert exported.model is not None, exported.reason
    assert exported.max_abs_error <= (1e-4 if task == CLASSIFY else 0.01)
    session = onnxruntime.InferenceSession(exported.model, providers=["CPUExecutionProvider"])
    rows = _unseen(frame)
    served = onnx_scores(session, {c: rows[c].to_numpy() for c in COLUMNS}, FEATURES, task)
    np.testing.assert_allclose(served, scores(pipeline, rows, task), rtol=0, atol=1e-4)


@pytest.mark.parametrize(("task", "family"), FITTED)
def test_skops_round_trip_needs_exactly_the_reviewed_types(
    task: str, family: str, fitted: dict, frame: pd.DataFrame
) -> None:
    pipeline = fitted[task, family]
    saved = skops.io.dumps(pipeline)
    assert sorted(skops.io.get_untrusted_types(data=saved)) == sorted(
        SKOPS_TRUSTED_TYPES[task, family]
    )
    loaded = skops.io.loads(saved, trusted=list(SKOPS_TRUSTED_TYPES[task, family]))
    np.testing.assert_array_equal(
        scores(loaded, frame[COLUMNS], task), scores(pipeline, frame[COLUMNS], task)
    )


def test_skops_refuses_a_classifier_with_unreviewed_types(fitted: dict) -> None:
    saved = skops.io.dumps(fitted[CLASSIFY, "random_forest"])
    with pytest.raises(skops.io.exceptions.UntrustedTypesFoundException):
        skops.io.loads(saved, trusted=list(SKOPS_TRUSTED_TYPES[CLASSIFY, "logistic_regression"]))


def _settings(tmp_path: Path, name: str) -> StudySettings:
    return StudySettings(
        study_name=name,
        storage=str(tmp_path / "study.journal"),
        n_trials=2,
        timeout_seconds=60,
        workers=1,
        seed=3,
        n_startup_trials=1,
    )


@pytest.mark.parametrize(
    ("objective", "direction"), [("log_loss", "MINIMIZE"), ("roc_auc", "MAXIMIZE")]
)
def test_classification_study_optimises_the_declared_objective(
    objective: str, direction: str, frame: pd.DataFrame, tmp_path: Path
) -> None:
    data = frame[[*COLUMNS, "tip", "split"]]
    settings = _settings(tmp_path, f"taxi-{objective}")
    study, numbers = run_study(
        settings, SPACE, FEATURES, data, "tip", CLASSIFY, objective, tmp_path
    )
    assert numbers == [0, 1] and study.direction.name == direction
    assert study.user_attrs["objective"] == objective
    family, params = best_configuration(study.best_params)
    declared = {space.family: space for space in SPACE}
    assert set(params) == set(declared[family].params())
    # the best value is the validation objective of the best configuration, refitted
    train, valid = data[data["split"] == "train"], data[data["split"] == "validation"]
    pipeline = build_pipeline(family, params, FEATURES, CLASSIFY)
    for _ in staged_fits(family, pipeline, train[COLUMNS], train["tip"]):
        pass
    refit = metrics(CLASSIFY, valid["tip"], scores(pipeline, valid[COLUMNS], CLASSIFY))
    assert refit[objective] == pytest.approx(study.best_value)
    # resuming the study on another objective would mix scores of two metrics
    with pytest.raises(ValueError, match="start a new study"):
        other = "brier" if objective == "roc_auc" else "roc_auc"
        run_study(settings, SPACE, FEATURES, data, "tip", CLASSIFY, other, tmp_path)


def test_classification_plots(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    p = rng.random(200)
    y = (rng.random(200) < p).astype(int)
    confusion = confusion_figure(y, p, 0.5)
    counts = confusion.axes[0].images[0].get_array()
    assert counts.sum() == len(y) and counts[1, 1] == ((p >= 0.5) & (y == 1)).sum()
    figures = {
        "roc": roc_figure(y, p),
        "precision_recall": precision_recall_figure(y, p),
        "reliability": reliability_figure(y, p),
        "confusion": confusion,
    }
    for name, figure in figures.items():
        assert figure.axes[0].get_title()
        assert save_figure(figure, tmp_path / f"{name}.png").stat().st_size > 0


@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=1, max_size=50))
def test_smape_is_between_0_and_2_and_symmetric(pairs: list[tuple[float, float]]) -> None:
    y, predicted = zip(*pairs, strict=True)
    value = smape(y, predicted)
    assert 0.0 <= value <= 2.0 + 1e-12
    assert value == pytest.approx(smape(predicted, y))
    assert smape(y, y) == 0.0


def test_mase_scales_each_predictor_by_the_baselines_mae() -> None:
    results = {"model": {"mae": 3.0}, "baseline": {"mae": 4.0}, "seasonal_naive": {"mae": 6.0}}
    scaled_errors(results)
    assert {name: r["mase"] for name, r in results.items()} == {
        "model": 0.75,
        "baseline": 1.0,
        "seasonal_naive": 1.5,
    }
