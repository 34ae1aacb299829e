"""Model families the search space can name, each a scikit-learn pipeline over the features.

Staged families fit in steps (more boosting iterations, more trees) so a trial can report
intermediate validation scores and be pruned early.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

STAGES = 4
"""A staged family is fitted in this many growing steps, each reported to the pruner."""

SKOPS_TRUSTED_TYPES = {
    "hist_gradient_boosting": ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
    "random_forest": ["numpy.dtype", "sklearn.tree._tree.Tree"],
    "ridge": ["numpy.dtype"],
}
"""Types outside skops' default allow-list that each family's saved pipeline contains, as
reviewed: scikit-learn's fitted tree structures and numpy dtypes (of the imputers and
scalers). A saved model needing anything else is refused, never unpickled."""


@dataclass(frozen=True)
class Features:
    categorical: Sequence[str]
    numeric: Sequence[str]


def build_pipeline(family: str, params: dict[str, Any], features: Features):
    """A fresh, unfitted pipeline of ``family`` with ``params``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    categorical, numeric = list(features.categorical), list(features.numeric)
    ordinal = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
    )
    if family == "hist_gradient_boosting":
        prep = ColumnTransformer([("cat", ordinal, categorical)], remainder="passthrough")
        # Category codes split as ordered numbers, not as native categorical splits: the test
        # MAE is the same here, and skl2onnx cannot export native categorical splits.
        model = HistGradientBoostingRegressor(
            **params, categorical_features=None, early_stopping=False, random_state=0
        )
    elif family == "random_forest":
        # Missing values imputed, not routed by the trees: ONNX cannot express that routing.
        prep = ColumnTransformer(
            [("cat", ordinal, categorical), ("num", SimpleImputer(strategy="median"), numeric)]
        )
        model = RandomForestRegressor(**params, n_jobs=1, random_state=0)
    elif family == "ridge":
        prep = ColumnTransformer(
            [
                ("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=20), categorical),
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ]
        )
        model = Ridge(**params)
    else:
        raise ValueError(f"unknown model family {family!r}")
    return Pipeline([("prep", prep), ("model", model)])


def staged_fits(family: str, pipeline, X, y) -> Iterator[int]:
    """Fit ``pipeline`` in growing stages, yielding the stage number after each fit."""
    model = pipeline.named_steps["model"]
    size_param = {"hist_gradient_boosting": "max_iter", "random_forest": "n_estimators"}.get(family)
    if size_param is None:
        pipeline.fit(X, y)
        yield 0
        return
    full = getattr(model, size_param)
    model.set_params(warm_start=True)
    for stage in range(1, STAGES + 1):
        model.set_params(**{size_param: max(1, round(full * stage / STAGES))})
        pipeline.fit(X, y)
        yield stage - 1
