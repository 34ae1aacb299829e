"""The service's OpenAPI document: what each endpoint accepts and answers, from the pipeline's
declaration.

``POST /predict`` parses its raw body itself (the fast path), so FastAPI cannot see its request
model; this module describes it (one item or a list of the declared request model, as
``application/json`` only, 415 otherwise), and builds the response models the handlers' JSON
follows. Nothing here runs per request.
"""

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from ml_assets.contract.tasks import Task
from serving.spec import ServedModel

REF = "#/components/schemas/{model}"
ADMIN_TOKEN = "adminToken"  # noqa: S105 (a security scheme's name)
"""The security scheme of the admin calls (a bearer token)."""
DATE_OUTSIDE_SNAPSHOT = "date_outside_snapshot"
NO_PREDICTION = "no_prediction"
"""A 422 error's type: the model has no prediction for the item (a statistical forecaster, for
a date past its horizon or before its series)."""
ACCEPTED = "send application/json (with no parameter, or charset=utf-8)"
"""What a 415 answer says is accepted; the request bodies of the document are that type only."""


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(Closed):
    """A request the service cannot answer, and why."""

    detail: str


class FieldError(Closed):
    """One reason a request is invalid: where (``loc``: the item's index in a list, then the
    field) and what is wrong."""

    type: str = Field(description="A machine-readable kind, e.g. missing, json_invalid.")
    loc: list[str | int]
    msg: str


class Invalid(Closed):
    """An invalid request: every error, each naming its field."""

    detail: list[FieldError]


class ReloadRefused(Closed):
    detail: str | list[FieldError] = Field(
        description="Why the model was rejected (the live one stays), or what in the body is wrong."
    )


class ItemWarning(Closed):
    """Something a caller should know about one item's prediction."""

    code: Literal["date_outside_snapshot"] = Field(
        description="date_outside_snapshot: the item's date is not covered by the loaded feature "
        "snapshot, so the features looked up in it took their defaults (missing values)."
    )
    field: str = Field(description="The request field concerned.")
    message: str


class Health(Closed):
    status: Literal["ok"]
    pipeline: str
    home: str = Field(
        description="The platform home (`$ML_ASSETS_HOME`) the service belongs to: a platform "
        "reuses or reloads a service it started only if it is of its own home."
    )


class NotLive(Closed):
    """No model is live (none has been loaded yet, or there is no champion)."""

    name: str = Field(description="The registered model the service serves.")
    ready: Literal[False]


class ChallengerState(Closed):
    """The version rolling out beside the champion and what it did since it was loaded (in
    this process)."""

    version: str
    run_id: str
    since: float = Field(description="When it was loaded, in seconds since the epoch.")
    requests: int = Field(description="Requests it scored, in shadow or as the canary.")
    answered: int = Field(description="Of those, the ones it answered (as the canary).")
    errors: int = Field(description="Requests it failed to score (the champion answered).")
    error_rate: float
    items: int
    agreement: float | None = Field(description="Share of items it agrees on with the champion.")
    latency_p50_ms: float | None = Field(description="Its own scoring time per request.")
    latency_p95_ms: float | None


class RolloutState(Closed):
    """Where the rollout of a new version stands: ``full`` (the champion alone), ``shadow``
    (the challenger is scored and logged, never returned) or ``canary`` (it answers the
    declared share of request keys)."""

    stage: Literal["full", "shadow", "canary"]
    canary_share: float | None = None
    challenger: ChallengerState | None


class LogFigures(Closed):
    """The prediction log of this process: predictions queued, written, dropped."""

    pending: int
    written: int
    dropped: int = Field(description="Lost to a full queue (the log never blocks a request).")
    outside_partitions: int = Field(description="Written, dated outside the partitions.")
    write_failures: int = Field(description="Failed writes (their batches are retried).")


UNSUPPORTED: dict[int | str, dict[str, Any]] = {
    415: {
        "model": Problem,
        "description": f"Another content type, or none with a body: {ACCEPTED}.",
        "headers": {"Accept": {"description": "The accepted type.", "schema": {"type": "string"}}},
    }
}
"""The 415 answer of the operations that take a JSON body, for their ``responses``."""


class Reload(Closed):
    """Which version to load; without one (or an empty body), the champion."""

    version: str | None = None


def described_model(served: ServedModel) -> type[BaseModel]:
    """``GET /model`` of a live model: what is served, from where."""
    threshold: dict[str, Any] = {}
    if served.task == "binary_classification":
        threshold["decision_threshold"] = (
            float,
            Field(description="A probability at or above it is labelled 1."),
        )
    return create_model(
        f"{_stem(served)}Model",
        __base__=Closed,
        __doc__="The live model.",
        name=(str, Field(description="The MLflow registered model.")),
        version=(str, Field(description="Its registry version that answers.")),
        run_id=str,
        trained_on=(str | None, Field(description="The feature partitions it was trained on.")),
        predictor=(Literal["onnx", "sklearn"], Field(description="What computes the scores.")),
        task=(Task, ...),
        snapshot=(str | None, Field(description="The partition of the loaded feature snapshot.")),
        loaded_at=(float, Field(description="When it went live, in seconds since the epoch.")),
        ready=(Literal[True], ...),
        rollout=(RolloutState, ...),
        prediction_log=(LogFigures | None, Field(default=None, description="Without it: off.")),
        **threshold,
    )


def answer_model(served: ServedModel) -> type[BaseModel]:
    """``POST /predict``'s answer: one prediction per item, in order."""
    fields: dict[str, Any] = {
        served.id_column: (str, Field(description="The item's identifier.")),
    }
    if served.task == "binary_classification":
        fields[served.score_field] = (
            float,
            Field(description=f"The model's probability that {served.prediction} is 1."),
        )
        fields[served.prediction] = (
            bool,
            Field(description="The label decided at the model's decision threshold."),
        )
    else:
        fields[served.prediction] = (float, Field(description="The model's prediction."))
    fields["warnings"] = (
        list[ItemWarning],
        Field(description="What the caller should know about this prediction; usually empty."),
    )
    prediction = create_model(f"{_stem(served)}Prediction", __base__=Closed, **fields)
    return create_model(
        f"{_stem(served)}Answer",
        __base__=Closed,
        model_version=(str, Field(description="The registry version that answered.")),
        request_id=(str, Field(description="The request's id in the prediction log.")),
        predictions=(list[prediction], ...),
    )


def predict_body(served: ServedModel) -> dict[str, Any]:
    """``openapi_extra`` of ``POST /predict``: its request body, which the handler parses."""
    item = {"$ref": REF.format(model=served.request.__name__)}
    many = {"type": "array", "items": item, "maxItems": served.max_batch}
    return {
        "requestBody": {
            "required": True,
            "description": f"One item, or a list of at most {served.max_batch}. A field takes "
            'its own JSON type only: an integer field a JSON integer (not 5.0, true or "5"), '
            'a number field any JSON number (not true or "5"), a string field a string, a '
            'boolean field true or false, a date field a "YYYY-MM-DD" string.',
            "content": {"application/json": {"schema": {"oneOf": [item, many]}}},
        }
    }


def reload_body() -> dict[str, Any]:
    """``openapi_extra`` of ``POST /admin/reload``: an optional body, and the bearer token."""
    return {
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="Reload")}}},
        },
        "security": [{ADMIN_TOKEN: []}],
    }


def install(app: FastAPI, served: ServedModel) -> None:
    """Make ``app.openapi()`` (``/openapi.json``, ``/docs``) include the models the routes'
    ``openapi_extra`` refers to: the request item and the reload body."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = document.setdefault("components", {})
            _, definitions = models_json_schema(
                [(served.request, "validation"), (Reload, "validation")], ref_template=REF
            )
            components.setdefault("schemas", {}).update(definitions["$defs"])
            components["securitySchemes"] = {
                ADMIN_TOKEN: {"type": "http", "scheme": "bearer", "description": "The admin token."}
            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _stem(served: ServedModel) -> str:
    return served.request.__name__.removesuffix("Request")
