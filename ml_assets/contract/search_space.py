"""The declared search space: model families and the distributions of their parameters.

A search space is a list of families, each told apart by its ``family`` name (a discriminated
union), each allowing only the parameters its estimator has. A typo in a family, a parameter or
a distribution fails when the definitions load, never as silently failed trials.
"""

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml_assets.contract.tasks import Task


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class FloatParam(_Strict):
    """A float drawn between ``low`` and ``high`` (log-uniformly when ``log``)."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> "FloatParam":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0, not {self.low}")
        return self


class IntParam(_Strict):
    """An integer between ``low`` and ``high`` in steps of ``step`` (log scale when ``log``)."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(default=1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> "IntParam":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("a log scale needs low > 0 and step 1")
        return self


class CategoricalParam(_Strict):
    """One of ``choices``."""

    type: Literal["categorical"]
    choices: list[str | int | float | bool | None] = Field(min_length=1)


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class _Family(_Strict):
    tasks: ClassVar[frozenset[Task]] = frozenset({"regression", "binary_classification"})
    """The tasks this family can learn."""
    statistical: ClassVar[bool] = False
    """A statistical forecaster of the target's daily series: it reads the model's
    ``time_column``, not the features, and forecasts at most the declared horizon ahead."""

    def params(self) -> dict[str, Param]:
        """The declared parameters (unset ones take the estimator's default)."""
        return {name: value for name, value in self if name != "family" and value is not None}


class HistGradientBoostingSpace(_Family):
    family: Literal["hist_gradient_boosting"]
    learning_rate: Param | None = None
    max_iter: Param | None = None
    max_leaf_nodes: Param | None = None
    max_depth: Param | None = None
    min_samples_leaf: Param | None = None
    l2_regularization: Param | None = None


class RandomForestSpace(_Family):
    family: Literal["random_forest"]
    n_estimators: Param | None = None
    max_depth: Param | None = None
    min_samples_leaf: Param | None = None
    max_features: Param | None = None


class RidgeSpace(_Family):
    family: Literal["ridge"]
    tasks: ClassVar[frozenset[Task]] = frozenset({"regression"})
    alpha: Param | None = None


class LogisticRegressionSpace(_Family):
    family: Literal["logistic_regression"]
    tasks: ClassVar[frozenset[Task]] = frozenset({"binary_classification"})
    C: Param | None = None


class AutoETSSpace(_Family):
    """statsforecast's AutoETS: exponential smoothing, its error, trend and season components
    chosen by AICc among those ``model`` allows."""

    family: Literal["auto_ets"]
    tasks: ClassVar[frozenset[Task]] = frozenset({"regression"})
    statistical: ClassVar[bool] = True
    season_length: Param | None = None
    """Days in a season (7: weekly); default 7."""
    model: Param | None = None
    """Three letters, error/trend/season: ``A`` additive, ``M`` multiplicative, ``N`` none,
    ``Z`` chosen by AICc (default ``ZZZ``)."""
    damped: Param | None = None
    """A damped trend: true, false, or None (chosen)."""


class AutoARIMASpace(_Family):
    """statsforecast's AutoARIMA: a (seasonal) ARIMA, its orders chosen by a stepwise search."""

    family: Literal["auto_arima"]
    tasks: ClassVar[frozenset[Task]] = frozenset({"regression"})
    statistical: ClassVar[bool] = True
    season_length: Param | None = None
    max_p: Param | None = None
    max_q: Param | None = None
    seasonal: Param | None = None


FamilySpace = Annotated[
    HistGradientBoostingSpace
    | RandomForestSpace
    | RidgeSpace
    | LogisticRegressionSpace
    | AutoETSSpace
    | AutoARIMASpace,
    Field(discriminator="family"),
]
