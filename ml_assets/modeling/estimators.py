"""Model families the search space can name, each a scikit-learn pipeline over the features.

A family learns one or both tasks: a regressor predicts the target, a binary classifier the
probability of the positive class 1. Staged families fit in steps (more boosting iterations,
more trees) so a trial can report intermediate validation scores and be pruned early.
"""

from collections.abc import Iterator, Mapping
from typing import Any

from ml_assets.contract.model_format import SKOPS_TRUSTED_TYPES, Features
from ml_assets.contract.tasks import Task
from ml_assets.modeling.forecasters import StatisticalForecaster

STAGES = 4
"""A staged family is fitted in this many growing steps, each reported to the pruner."""

STATISTICAL = ("auto_ets", "auto_arima")
"""Families that forecast the target's daily series (``ml_assets.modeling.forecasters``)."""


def build_pipeline(family: str, params: Mapping[str, Any], features: Features, task: Task):
    """A fresh, unfitted pipeline of ``family`` with ``params`` that learns ``task``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    if (task, family) not in SKOPS_TRUSTED_TYPES:
        raise ValueError(f"no model family {family!r} for {task}")
    if family in STATISTICAL:
        if features.time is None or features.horizon_days is None:
            raise ValueError(f"family {family!r} needs the model's time column and horizon")
        return StatisticalForecaster(family, params, features.time, features.horizon_days)
    classify = task == "binary_classification"
    categorical, numeric = list(features.categorical), list(features.numeric)

    def ordinal(min_frequency: int | None = None) -> OrdinalEncoder:
        """Category codes, -1 for unseen and missing categories."""
        return OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=-1,
            encoded_missing_value=-1,
            min_frequency=min_frequency,
        )

    if family == "hist_gradient_boosting":
        # the time column, when there is one, is not a feature: only the numeric ones pass
        numbers = ("num", "passthrough", numeric) if features.time else None
        prep = ColumnTransformer(
            [("cat", ordinal(), categorical), *([numbers] if numbers else [])],
            remainder="drop" if numbers else "passthrough",
        )
        # Category codes split as ordered numbers, not as native categorical splits: the test
        # MAE is the same here, and skl2onnx cannot export native categorical splits.
        estimator = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        model = estimator(**params, categorical_features=None, early_stopping=False, random_state=0)
    elif family == "random_forest":
        # Missing values imputed, not routed by the trees: ONNX cannot express that routing.
        prep = ColumnTransformer(
            [("cat", ordinal(), categorical), ("num", SimpleImputer(strategy="median"), numeric)]
        )
        estimator = RandomForestClassifier if classify else RandomForestRegressor
        model = estimator(**params, n_jobs=1, random_state=0)
    else:
        # One-hot over category codes: rare categories share a code, missing and unseen ones
        # the code -1. skl2onnx exports neither a one-hot encoder's rare categories on a single
        # column nor its missing category (ONNX receives a missing category as "", unseen).
        one_hot = make_pipeline(ordinal(min_frequency=20), OneHotEncoder(handle_unknown="ignore"))
        prep = ColumnTransformer(
            [
                ("cat", one_hot, categorical),
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ]
        )
        model = LogisticRegression(**params, max_iter=2000) if classify else Ridge(**params)
    return Pipeline([("prep", prep), ("model", model)])


def staged_fits(family: str, pipeline, X, y) -> Iterator[int]:
    """Fit ``pipeline`` in growing stages, yielding the stage number after each fit."""
    size_param = {"hist_gradient_boosting": "max_iter", "random_forest": "n_estimators"}.get(family)
    if size_param is None:
        pipeline.fit(X, y)
        yield 0
        return
    model = pipeline.named_steps["model"]
    full = getattr(model, size_param)
    model.set_params(warm_start=True)
    for stage in range(1, STAGES + 1):
        model.set_params(**{size_param: max(1, round(full * stage / STAGES))})
        pipeline.fit(X, y)
        yield stage - 1
