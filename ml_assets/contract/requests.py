"""The prediction request model of a pipeline, built from its declared request fields."""

import datetime as dt
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from ml_assets.contract.declaration import PipelineDeclaration, RequestField


def _clock_time(value: int) -> int:
    if not 0 <= value <= 2359 or value % 100 > 59:
        raise ValueError("a clock time is HHMM with hour 00-23 and minute 00-59")
    return value


TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "date": dt.date,
    "hhmm": Annotated[int, AfterValidator(_clock_time)],
}


def _bounds(declaration: PipelineDeclaration, field: RequestField) -> dict[str, float]:
    if field.range_of:
        source, column = field.range_of.split(".")
        rule = declaration.source(source).ranges[column]
        return {"ge": rule.low, "le": rule.high}
    return {
        bound: value
        for bound, value in (("ge", field.low), ("le", field.high))
        if value is not None
    }


def _field(declaration: PipelineDeclaration, field: RequestField) -> tuple[Any, Any]:
    kind = TYPES[field.type]
    if field.choices:
        kind = Annotated[str, AfterValidator(_one_of(field.choices))]
    rules: dict[str, Any] = {"description": field.description, **_bounds(declaration, field)}
    if field.pattern:
        rules["pattern"] = field.pattern
    if field.required:
        return kind, Field(**rules)
    return kind | None, Field(default=None, **rules)


def _one_of(choices: list[str]):
    allowed = frozenset(choices)

    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(sorted(allowed))}")
        return value

    return check


def request_model(declaration: PipelineDeclaration) -> type[BaseModel]:
    """One item of the pipeline's ``POST /predict``: the declared fields and their rules."""
    fields = {f.name: _field(declaration, f) for f in declaration.serving.request_fields}
    return create_model(
        f"{declaration.name.title().replace('_', '')}Request",
        __config__=ConfigDict(extra="forbid", frozen=True),
        __doc__=f"One {declaration.name} prediction request.",
        **fields,
    )
