"""The prediction service (FastAPI on uvicorn).

- ``POST /predict``: one item or a list; 422 names the bad field (each field takes its own
  JSON type only: ``ml_assets.contract.requests``), 413 for oversize batches, 415 for a body
  that is not ``application/json``. The handler parses the raw body itself (no FastAPI body
  model, which costs a request about as much as scoring it); ``serving.openapi`` describes it
  in ``/openapi.json`` all the same.
  Where features are looked up in a snapshot by date, an item dated outside the loaded
  snapshot gets a ``date_outside_snapshot`` warning beside its prediction, or a 422, as the
  declaration's ``serving.outside_snapshot`` says. Every answer carries a ``request_id``;
  every prediction goes to the prediction log (``serving.prediction_log``), off the request
  path. An admin's request with ``x-model-version`` is answered by that loaded version.
- A challenger rolling out (``serving.challenger``) is scored on the same columns as the
  champion: in shadow in a process of its own, in batches (``serving.shadow_process``), logged
  and never returned; as a canary it answers its share of request keys, scored on the request
  path. Its errors, latency and agreement are in ``GET /model`` (which first waits for the
  shadow scoring of every request already answered) and ``/metrics``.
- ``GET /health`` (the process answers, for which pipeline and home), ``GET /ready`` (a model is
  live), ``GET /model`` (version, run, trained-on partitions, rollout, prediction log),
  ``GET /metrics`` (Prometheus).
- ``POST /admin/unload`` (bearer token): serve no model, until the next reload (a failed first
  deploy's undo).
- ``POST /admin/reload`` (bearer token): load the champion (or a given version), the
  challenger the registry says is rolling out, and the latest online feature snapshot beside
  the live ones, score the warm-up items, then swap them in one assignment, so every response
  comes wholly from the old models or the new ones and no request fails during a rollout. A
  model that cannot be loaded or scores the warm-up items badly is rejected and the live one
  stays.

This module is the routes; what the service holds and how a reload prepares the next model is
``serving.service``, the scoring of a request and what it hands to the log ``serving.scoring``.
"""

import hmac
import json
import logging
import time
import uuid
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError

from ml_assets.contract.names import CHAMPION
from resources.table_snapshots import TableSnapshots
from serving import openapi, scoring
from serving.prediction_log import PredictionLog
from serving.prometheus_metrics import VERSION_KEY, MetricsMiddleware, ServiceMetrics
from serving.service import Live, ReloadRejected, Service, freeze_heap
from serving.shadow_process import ChildSetup
from serving.spec import ServedModel

API_VERSION = "1"
"""The version of the service's API (``info.version`` of its OpenAPI document)."""
BYTES_PER_ITEM = 1024
"""Request bodies above ``max_batch`` items of this size are refused before parsing (413)."""
FORCED_VERSION = "x-model-version"
"""Header of an admin's request naming the loaded version that must answer it."""
JSON_PARAMETERS = frozenset({"", "charset=utf-8", 'charset="utf-8"'})
"""The parameters an ``application/json`` body may declare: none, or UTF-8 (JSON's encoding)."""
INLINE_ITEMS = 32
"""Larger batches are scored on a worker thread, so single requests are not held up."""
log = logging.getLogger("serving")


def _authorized(service: Service, request: Request) -> bool:
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {service.token}".encode())


def _forced(service: Service, live: Live, request: Request, items: list, outside) -> Response:
    """An admin's request answered by the loaded version it names (``x-model-version``): how
    a deploy smoke-tests a challenger before any caller sees it. Neither logged nor counted."""
    if not _authorized(service, request):
        return _error(401, f"{FORCED_VERSION} needs 'Authorization: Bearer <token>'")
    version = request.headers[FORCED_VERSION]
    loaded = [live.model, *([live.challenger.model] if live.challenger else [])]
    chosen = next((m for m in loaded if m.version == version), None)
    if chosen is None:
        return _error(409, f"v{version} is not loaded (loaded: {[m.version for m in loaded]})")
    served = service.served
    columns = served.columns(live.lookups, items)
    scores = chosen.predictor.predict(columns) if items else np.zeros(0)
    ids = columns[served.id_column] if items else []
    warnings = scoring.warnings(served, live, items, outside)
    payload = {
        "model_version": chosen.version,
        "request_id": uuid.uuid4().hex,
        "predictions": scoring.answers(served, chosen, ids, scores, warnings),
    }
    return Response(json.dumps(payload), media_type="application/json")


def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _unsupported(request: Request, body: bytes) -> JSONResponse | None:
    """The 415 of a request whose content type is not ``application/json`` (UTF-8), or that
    has a body and no content type; None when it may be parsed."""
    declared = request.headers.get("content-type")
    if declared is None:
        if not body:
            return None
        problem = "a body without a content type"
    else:
        media, _, parameters = declared.partition(";")
        if media.strip().lower() == "application/json" and (
            parameters.strip().lower() in JSON_PARAMETERS
        ):
            return None
        problem = f"unsupported content type {declared!r}"
    return _error(415, f"{problem}: {openapi.ACCEPTED}", {"accept": "application/json"})


def _predict_description(served: ServedModel) -> str:
    described = "One item gets a list of one prediction; a list, one per item, in order."
    field = served.snapshot_date_field
    if field is None:
        return described
    if served.outside_snapshot == "refuse":
        return (
            f"{described} An item whose `{field}` the loaded feature snapshot does not cover "
            "is refused (422, type `date_outside_snapshot`)."
        )
    return (
        f"{described} An item whose `{field}` the loaded feature snapshot does not cover is "
        "scored with the lookups' defaults and gets a `date_outside_snapshot` warning."
    )


def create_app(
    served: ServedModel,
    snapshots: TableSnapshots,
    token: str,
    log_url: str | None = None,
    *,
    home: str,
) -> FastAPI:
    """The service of ``served``; with ``log_url``, every prediction goes to the prediction
    log there (``serving.prediction_log``). ``home`` is the platform home ``/health`` names,
    so that a platform reloads only the services of its own."""
    prediction_log = (
        PredictionLog(
            log_url,
            served.pipeline,
            served.partition_of,
            served.monitoring.log_flush_seconds,
            served.monitoring.log_flush_records,
        )
        if log_url is not None
        else None
    )
    import mlflow

    shadow = ChildSetup(
        served.pipeline, mlflow.get_tracking_uri(), mlflow.get_registry_uri(), snapshots.url,
        log_url, served.monitoring.log_flush_seconds, served.monitoring.log_flush_records,
    )  # fmt: skip
    service = Service(served, snapshots, token, ServiceMetrics(), shadow, prediction_log)
    metrics = service.metrics

    async def lifespan(app: FastAPI):
        try:
            service.live = await run_in_threadpool(service.prepare, None)
        except ReloadRejected as error:
            log.warning("starting without a model: %s", error)
        freeze_heap()
        service.shadow.start()
        if prediction_log is not None:
            prediction_log.start()
        yield
        await run_in_threadpool(service.shadow.stop)
        if prediction_log is not None:
            await run_in_threadpool(prediction_log.stop)

    app = FastAPI(
        title=f"{served.registered_model} predictions",
        description=f"The {served.pipeline} pipeline's prediction service: its registered "
        f"model's champion, {served.task}.",
        version=API_VERSION,
        lifespan=lifespan,
    )
    app.state.service = service
    routes = {"/predict", "/health", "/ready", "/model", "/metrics", "/admin/reload"}
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)
    openapi.install(app, served)
    live_model = openapi.described_model(served)

    @app.post(
        "/predict",
        operation_id="predict",
        summary="Score one item or a list",
        description=_predict_description(served),
        response_model=None,
        openapi_extra=openapi.predict_body(served),
        responses={
            200: {"model": openapi.answer_model(served), "description": "The predictions."},
            401: {"model": openapi.Problem, "description": f"{FORCED_VERSION} without the token."},
            409: {"model": openapi.Problem, "description": f"{FORCED_VERSION} is not loaded."},
            413: {"model": openapi.Problem, "description": f"Over {served.max_batch} items."},
            **openapi.UNSUPPORTED,
            422: {"model": openapi.Invalid, "description": "An invalid item, field named."},
            503: {"model": openapi.Problem, "description": "No model is live yet."},
        },
    )
    async def predict(request: Request) -> Response:
        began = time.perf_counter()
        limit = served.max_batch * BYTES_PER_ITEM
        if int(request.headers.get("content-length") or 0) > limit:
            return _error(413, f"request body over {limit} bytes")
        body = await request.body()
        if len(body) > limit:  # a chunked body has no content-length
            return _error(413, f"request body over {limit} bytes")
        if (unsupported := _unsupported(request, body)) is not None:
            return unsupported
        live = service.live
        if live is None:
            return _error(503, "no model is live")
        request.scope[VERSION_KEY] = live.model.version
        is_list = body.lstrip()[:1] == b"["
        try:
            parsed = (service.many if is_list else service.one).validate_json(body)
        except ValidationError as error:
            return _error(
                422, error.errors(include_url=False, include_context=False, include_input=False)
            )
        items = parsed if is_list else [parsed]
        if len(items) > served.max_batch:
            return _error(413, f"{len(items)} items; at most {served.max_batch} per request")
        outside = scoring.outside(served, live, items)
        if outside and served.outside_snapshot == "refuse":
            return _error(422, scoring.refusal(served, live, items, outside, is_list))
        if request.headers.get(FORCED_VERSION) is not None:
            return _forced(service, live, request, items, outside)
        if len(items) > INLINE_ITEMS:  # keep the event loop free for other requests
            scored = await run_in_threadpool(scoring.score, live, served, items)
        else:
            scored = scoring.score(live, served, items)
        answering, scores = live.model, scored.champion
        if scored.canary is not None:
            answering, scores = live.challenger.model, scored.canary  # type: ignore[union-attr]
        if not np.all(np.isfinite(scores)):
            return _error(422, scoring.unpredicted(scores, is_list))
        request.scope[VERSION_KEY] = answering.version
        metrics.predictions.labels(answering.version).inc(len(items))
        request_id = uuid.uuid4().hex
        warnings = scoring.warnings(served, live, items, outside)
        payload = {
            "model_version": answering.version,
            "request_id": request_id,
            "predictions": scoring.answers(served, answering, scored.ids, scores, warnings),
        }
        if items:
            scoring.record(service, metrics, live, scored, items, request_id, began, body, is_list)
        return Response(
            json.dumps(payload), media_type="application/json", headers={"x-request-id": request_id}
        )

    @app.get(
        "/health",
        operation_id="health",
        summary="The process answers",
        response_model=openapi.Health,
    )
    async def health() -> dict[str, str]:
        return {"status": "ok", "pipeline": served.pipeline, "home": home}

    @app.get(
        "/ready",
        operation_id="ready",
        summary="A model is live",
        response_model=None,
        responses={
            200: {"model": live_model, "description": "The live model."},
            503: {"model": openapi.NotLive, "description": "No model is live."},
        },
    )
    async def ready(request: Request) -> JSONResponse:
        described = service.describe()
        request.scope[VERSION_KEY] = described.get("version")
        return JSONResponse(described, status_code=200 if described["ready"] else 503)

    @app.get(
        "/model",
        operation_id="model",
        summary="The live model",
        response_model=None,
        responses={
            200: {"model": live_model, "description": "The live model."},
            404: {"model": openapi.NotLive, "description": "No model is live."},
        },
    )
    async def model(request: Request) -> JSONResponse:
        await run_in_threadpool(service.shadow.settle)  # count every request answered so far
        described = service.describe()
        request.scope[VERSION_KEY] = described.get("version")
        return JSONResponse(described, status_code=200 if described["ready"] else 404)

    @app.get(
        "/metrics",
        operation_id="metrics",
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"description": "Requests, errors, latency and predictions."}},
    )
    async def prometheus() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/admin/reload",
        operation_id="reload",
        summary="Load the champion (or a version) and swap it in",
        description="The new model and the latest snapshot are loaded beside the live model and "
        "score the warm-up items before one assignment swaps them in; a model that cannot be "
        "loaded or scores them badly is rejected and the live one stays.",
        response_model=None,
        openapi_extra=openapi.reload_body(),
        responses={
            200: {"model": live_model, "description": "The model now live."},
            401: {"model": openapi.Problem, "description": "No or a wrong bearer token."},
            **openapi.UNSUPPORTED,
            422: {"model": openapi.ReloadRefused, "description": "Rejected; the live one stays."},
        },
    )
    async def reload(request: Request) -> JSONResponse:
        if not _authorized(service, request):
            return _error(401, "admin calls need 'Authorization: Bearer <token>'")
        body = await request.body()
        if (unsupported := _unsupported(request, body)) is not None:
            return unsupported
        try:
            version = service.reload_body.validate_json(body).version if body.strip() else None
        except ValidationError as error:
            return _error(
                422, error.errors(include_url=False, include_context=False, include_input=False)
            )
        async with service.reloading:
            try:
                prepared = await run_in_threadpool(service.prepare, version)
            except ReloadRejected as error:
                return _error(422, f"model rejected, the live one stays: {error}")
            if prepared is None:
                return _error(
                    422, f"{served.registered_model} has no {CHAMPION}; the live one stays"
                )
            service.live = prepared  # the one switch: later requests see the new model
        await run_in_threadpool(freeze_heap)
        log.info("now serving %s", service.describe())
        return JSONResponse(service.describe())

    @app.post(
        "/admin/unload",
        operation_id="unload",
        summary="Serve no model",
        description="The live model (and any challenger) is taken out: predictions answer 503 "
        "until the next reload. What a deploy that fails with no champion to go back to does, "
        "so that no model the registry does not name keeps answering.",
        response_model=None,
        openapi_extra={"security": [{openapi.ADMIN_TOKEN: []}]},
        responses={
            200: {"model": openapi.NotLive, "description": "No model is live now."},
            401: {"model": openapi.Problem, "description": "No or a wrong bearer token."},
        },
    )
    async def unload(request: Request) -> JSONResponse:
        if not _authorized(service, request):
            return _error(401, "admin calls need 'Authorization: Bearer <token>'")
        async with service.reloading:
            service.live = None
        log.info("unloaded: no model is live")
        return JSONResponse(service.describe())

    return app
