"""The prediction request model of a pipeline, built from its declared request fields."""

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from ml_assets.contract.declaration import PipelineDeclaration, RequestField


def _clock_time(value: int) -> int:
    if not 0 <= value <= 2359 or value % 100 > 59:
        raise ValueError("a clock time is HHMM with hour 00-23 and minute 00-59")
    return value


EARLIEST_DATE, LATEST_DATE = dt.date(1678, 1, 1), dt.date(2261, 12, 31)
"""The dates a request may carry: those whose times pandas and numpy hold as nanosecond
timestamps (1677-09-22 to 2262-04-11), in any time zone, which the feature code works in."""

TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "date": Annotated[dt.date, Field(ge=EARLIEST_DATE, le=LATEST_DATE)],
    "hhmm": Annotated[int, AfterValidator(_clock_time)],
}


def _field(declaration: PipelineDeclaration, field: RequestField) -> tuple[Any, Any]:
    declared = field.rules(declaration)
    kind = TYPES[field.type]
    if declared["choices"]:
        kind = Literal[tuple(declared["choices"])]
    rules: dict[str, Any] = {"description": field.description}
    for bound, name in (("ge", "low"), ("le", "high"), ("pattern", "pattern")):
        if declared[name] is not None:
            rules[bound] = declared[name]
    if field.required:
        return kind, Field(**rules)
    return kind | None, Field(default=None, **rules)


def request_model(declaration: PipelineDeclaration) -> type[BaseModel]:
    """One item of the pipeline's ``POST /predict``: the declared fields and their rules."""
    fields = {f.name: _field(declaration, f) for f in declaration.serving.request_fields}
    return create_model(
        f"{declaration.name.title().replace('_', '')}Request",
        __config__=ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False),
        __doc__=f"One {declaration.name} prediction request.",
        **fields,
    )
