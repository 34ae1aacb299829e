"""The ``features:`` section of a declaration: the history a features asset reads and the time
features the platform computes for it (``ml_assets.data.time_features``).

Every transform's output columns are known from the declaration alone, so the feature schema
can be checked against them when the definitions load.
"""

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ml_assets.contract.base import NAME, Strict, unique

Stat = Literal["mean", "sum", "min", "max", "std"]
Calendar = Literal["dayofweek", "month", "dayofyear", "weekofyear", "weekend"]
"""Calendar features of a row's time: day of the week (Monday 0), month (1-12), day of the year
(1-366), ISO week (1-53), weekend (1 on Saturday and Sunday)."""
SHORTEST_MONTH = 28
"""Days a monthly partition covers at least."""


AssetName = Annotated[str, Field(pattern=NAME)]


class History(Strict):
    """How far back an input is read: a number of partitions, or a duration in days (the
    partitions that cover it)."""

    partitions: int | None = Field(default=None, ge=0)
    days: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one(self) -> "History":
        if (self.partitions is None) == (self.days is None):
            raise ValueError("give partitions or days, not both or neither")
        return self

    def partitions_for(self, kind: str) -> int:
        """Earlier partitions to read for ``kind`` (``daily``/``monthly``) partitions."""
        if self.partitions is not None:
            return self.partitions
        return self.days if kind == "daily" else math.ceil(self.days / SHORTEST_MONTH)


class Time(Strict):
    """The rows' time column and what a step of a lag or window is."""

    column: str
    steps: Literal["days", "rows"] = "days"
    """``days``: calendar days of the time (a missing day is missing, its lag NaN);
    ``rows``: the rows of the group in time order."""


class Grouped(Strict):
    column: str
    by: list[str] = Field(default_factory=list)
    """Columns whose values form the groups (none: one series)."""

    @field_validator("by", mode="before")
    @classmethod
    def _listed(cls, by: str | list[str]) -> list[str]:
        return [by] if isinstance(by, str) else by

    @property
    def suffix(self) -> str:
        return "".join(f"_by_{name}" for name in self.by)


class Lag(Grouped):
    """The column's value ``periods`` steps earlier in the row's group."""

    periods: list[int] = Field(min_length=1)

    @field_validator("periods")
    @classmethod
    def _positive(cls, periods: list[int]) -> list[int]:
        if any(p < 1 for p in periods):
            raise ValueError(f"periods must be at least 1: {periods}")
        return periods

    @property
    def outputs(self) -> list[str]:
        return [f"{self.column}_lag_{p}{self.suffix}" for p in self.periods]


class Rolling(Grouped):
    """Statistics of the column over the ``window`` steps ending the step before the row
    (``closed: left``, no leakage of the row's own value) or at the row (``right``)."""

    window: int = Field(ge=1)
    stats: list[Stat] = Field(min_length=1)
    closed: Literal["left", "right"] = "left"

    @property
    def outputs(self) -> list[str]:
        return [f"{self.column}_{stat}_{self.window}{self.suffix}" for stat in self.stats]

    @property
    def steps_back(self) -> int:
        return self.window if self.closed == "left" else self.window - 1


class Expanding(Grouped):
    """Statistics of the column over every earlier step of the group that was read (the
    declared history and the partition's earlier rows), excluding the row's own step."""

    stats: list[Stat] = Field(min_length=1)

    @property
    def outputs(self) -> list[str]:
        return [f"{self.column}_expanding_{stat}{self.suffix}" for stat in self.stats]


class Holidays(Strict):
    """A public-holiday calendar (the ``holidays`` package): ``holiday`` is 1 on its days."""

    country: str
    subdivision: str | None = None

    @model_validator(mode="after")
    def _known(self) -> "Holidays":
        import holidays

        supported = holidays.list_supported_countries()
        if self.country not in supported:
            raise ValueError(f"no holiday calendar for country {self.country!r}")
        if self.subdivision is not None and self.subdivision not in supported[self.country]:
            raise ValueError(f"{self.country} has no subdivision {self.subdivision!r}")
        return self


HOLIDAY = "holiday"
ROWS, HISTORY = "rows", "history"
"""The parameters by which a pipeline's feature and snapshot functions take the partition's
rows of ``features.input`` and its earlier partitions' rows; ``features.reads`` by their own
names."""


class Features(Strict):
    """The history the features asset reads, by input asset, and the time features the
    platform adds to its rows before the pipeline's feature function sees them."""

    input: AssetName | None = None
    """The input asset whose rows the features are computed from (the transforms read it)."""
    history: dict[AssetName, History] = Field(default_factory=dict)
    """Earlier partitions read per input asset (by name), beside the partition itself; only the
    input's history is read."""
    reads: list[AssetName] = Field(default_factory=list)
    """Further inputs of the feature function, each handed to it as the parameter of its name:
    the same partition of a partitioned asset, an unpartitioned table whole."""
    time: Time | None = None
    lags: list[Lag] = Field(default_factory=list)
    rolling: list[Rolling] = Field(default_factory=list)
    expanding: list[Expanding] = Field(default_factory=list)
    calendar: list[Calendar] = Field(default_factory=list)
    holidays: Holidays | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Features":
        if (self.outputs or self.history or self.reads) and self.input is None:
            raise ValueError("name the input whose rows the features are computed from")
        unique(self.reads, "reads")
        for name in self.reads:
            if name in (self.input, ROWS, HISTORY):
                raise ValueError(
                    f"reads: {name!r} is the input or a parameter the feature function is "
                    f"handed anyway ({ROWS}, {HISTORY})"
                )
        others = sorted(set(self.history) - {self.input})
        if others:
            raise ValueError(
                f"history: only the history of the input ({self.input}) is read, not of "
                f"{', '.join(others)}"
            )
        if self.outputs and self.time is None:
            raise ValueError("time features need the rows' time column: declare time.column")
        unique(self.calendar, "calendar features")
        unique(self.outputs, "time feature outputs")
        return self

    @property
    def windows(self) -> list[Lag | Rolling | Expanding]:
        return [*self.lags, *self.rolling, *self.expanding]

    @property
    def outputs(self) -> list[str]:
        """The columns the declared transforms add, in order."""
        names = [name for transform in self.windows for name in transform.outputs]
        return [*names, *self.calendar, *([HOLIDAY] if self.holidays else [])]

    @property
    def inputs(self) -> list[str]:
        """The columns of the rows the declared transforms read."""
        read = [self.time.column] if self.time else []
        for transform in self.windows:
            read += [transform.column, *transform.by]
        return list(dict.fromkeys(read))

    @property
    def nearest_days(self) -> int:
        """The fewest days back any declared window reads (lags, rolling windows), so the
        days that many days after the rows read still have their whole history; 0 when a
        window reads its own day, steps by rows or is expanding (its extent is what was read)."""
        if self.time is None or self.time.steps != "days" or self.expanding or not self.windows:
            return 0
        reach = [min(lag.periods) for lag in self.lags]
        reach += [1 if window.closed == "left" else 0 for window in self.rolling]
        return min(reach)

    def history_partitions(self, name: str, kind: str) -> int:
        """Earlier partitions of input ``name`` read for ``kind`` partitions (0: none)."""
        declared = self.history.get(name)
        return declared.partitions_for(kind) if declared else 0

    def check_history(self, kind: str) -> None:
        """Days-stepped lags and windows must fit in the history of the input they read, which
        covers at least its partitions' days (``kind``: the declared partitioning)."""
        if self.time is None or self.time.steps != "days":
            return
        partitions = self.history_partitions(self.input, kind)
        covered = partitions * (1 if kind == "daily" else SHORTEST_MONTH)
        reach = [(n, p) for lag in self.lags for n, p in zip(lag.outputs, lag.periods, strict=True)]
        reach += [(window.outputs[0], window.steps_back) for window in self.rolling]
        for name, days in reach:
            if days > covered:
                raise ValueError(
                    f"{name} reads {days} days back but the history of {self.input} covers "
                    f"{covered}: declare history: {{{self.input}: {{days: {days}}}}}"
                )
