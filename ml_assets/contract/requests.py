"""The prediction request model of a pipeline, built from its declared request fields.

Requests are JSON, and a field takes only its own JSON type (pydantic's strict mode, which the
service applies to the raw body): ``int`` and ``hhmm`` a JSON integer (not ``5.0``, ``true``
or ``"5"``); ``float`` any JSON number, integers included (not ``true`` or ``"5"``); ``str`` a
JSON string; ``bool`` ``true`` or ``false`` (not ``1`` or ``"yes"``); ``date`` a
``"YYYY-MM-DD"`` string (not a timestamp or a date-time). No string is read as a number, so
neither separators (``"1_000"``, ``"1,000"``) nor spaces get through.
"""

import datetime as dt
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, create_model

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
"""The Python type of each declared field type (validated strictly: see the module's note)."""


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
    """One item of the pipeline's ``POST /predict``: the declared fields and their rules,
    each of its own JSON type only. Validate request bodies with ``model_validate_json`` (a
    date is a string in JSON; strict Python validation wants a ``date``), and items given as
    Python data with ``parse_item``."""
    fields = {f.name: _field(declaration, f) for f in declaration.serving.request_fields}
    return create_model(
        f"{declaration.name.title().replace('_', '')}Request",
        __config__=ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True),
        __doc__=f"One {declaration.name} prediction request.",
        **fields,
    )


def parse_item(model: type[BaseModel], item: Mapping[str, JsonValue]) -> BaseModel:
    """``item`` (a request item as JSON data: a declared warm-up request, or a row's
    ``request_items``) validated as the service validates it in a request body."""
    return model.model_validate_json(json.dumps(item))
