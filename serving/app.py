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
- ``POST /admin/reload`` (bearer token): load the champion (or a given version), the
  challenger the registry says is rolling out, and the latest online feature snapshot beside
  the live ones, score the warm-up items, then swap them in one assignment, so every response
  comes wholly from the old models or the new ones and no request fails during a rollout. A
  model that cannot be loaded or scores the warm-up items badly is rejected and the live one
  stays.
"""

import asyncio
import datetime as dt
import gc
import hmac
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import TypeAdapter, ValidationError

from ml_assets.contract.names import CHALLENGER, CHAMPION, STAGE_TAG, STAGES
from ml_assets.contract.requests import parse_item
from ml_assets.home import ml_assets_home
from resources.table_snapshots import TableSnapshots
from serving import openapi
from serving.challenger import Challenger, Outcome
from serving.metrics import VERSION_KEY, MetricsMiddleware, ServiceMetrics
from serving.prediction_log import PredictionLog, Scored
from serving.predictors import LoadedModel, NoChampion, load_version, resolve_alias
from serving.shadow import Compared, Comparison
from serving.shadow_process import ChildSetup, ShadowDied, Shadowed, ShadowProcess
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


@dataclass(frozen=True)
class Live:
    """What answers requests: a model and the feature snapshot its items are looked up in."""

    model: LoadedModel
    lookups: Any
    snapshot: str | None
    covers: tuple[dt.date, dt.date] | None = None
    """The dates ``[first, end)`` the snapshot holds lookups for (None: no date check)."""
    challenger: Challenger | None = None
    """The version rolling out beside the champion, if any (scored on the same columns)."""


class ReloadRejected(Exception):
    """A model or snapshot that must not go live; the live one stays."""


class Service:
    def __init__(
        self,
        served: ServedModel,
        snapshots: TableSnapshots,
        token: str,
        metrics: ServiceMetrics,
        shadow: ChildSetup,
        log: PredictionLog | None = None,
    ) -> None:
        self.served, self.snapshots, self.token, self.log = served, snapshots, token, log
        self.metrics = metrics
        self.shadow = ShadowProcess(shadow, self.count_challenger)
        self.canary = Comparison(
            served.task, served.rollout.agreement_tolerance, log, returned=True
        )
        self.live: Live | None = None
        self.reloading = asyncio.Lock()
        self.one = TypeAdapter(served.request)
        self.many = TypeAdapter(list[served.request])  # type: ignore[name-defined]
        self.reload_body = TypeAdapter(openapi.Reload)

    def prepare(self, version: str | None) -> Live | None:
        """Load ``version`` (default: the champion) and the latest snapshot; None: no champion."""
        name = self.served.registered_model
        try:
            version = version or resolve_alias(name, CHAMPION)
        except NoChampion:
            return None
        try:
            model = load_version(name, version, self.served.features, self.served.task)
            lookups, snapshot = self._lookups()
            warm_up = [parse_item(self.served.request, i) for i in self.served.warm_up]
            scores = model.predictor.predict(self.served.columns(lookups, warm_up))
        except ReloadRejected:
            raise
        except Exception as error:  # any failure to load or score keeps the live model
            raise ReloadRejected(f"{name} v{version}: {type(error).__name__}: {error}") from error
        if len(scores) != len(warm_up) or not np.all(np.isfinite(scores)):
            raise ReloadRejected(f"{name} v{version} gave non-finite warm-up predictions")
        dates = self.served.snapshot_dates
        covers = dates(snapshot) if dates is not None and snapshot is not None else None
        challenger = self._challenger(version, self.served.columns(lookups, warm_up))
        if challenger is not None:  # the shadow process scores it too: loaded before it goes live
            try:
                self.shadow.load(challenger.model.version, snapshot)
            except (ShadowDied, RuntimeError) as error:
                raise ReloadRejected(
                    f"{name} v{challenger.model.version} ({challenger.stage}) cannot be "
                    f"scored in shadow: {error}"
                ) from error
        return Live(model, lookups, snapshot, covers, challenger)

    def _challenger(self, champion: str, warm_up: Any) -> Challenger | None:
        """The ``challenger`` alias's version when the registry says it is rolling out (its
        ``rollout_stage`` tag), loaded and warmed up like the champion; None otherwise."""
        from mlflow.tracking import MlflowClient

        name = self.served.registered_model
        try:
            version = resolve_alias(name, CHALLENGER)
        except NoChampion:
            return None
        if version == champion:
            return None
        stage = MlflowClient().get_model_version(name, version).tags.get(STAGE_TAG)
        if stage not in STAGES:
            return None
        try:
            model = load_version(name, version, self.served.features, self.served.task)
            scores = model.predictor.predict(warm_up)
        except Exception as error:
            raise ReloadRejected(
                f"{name} v{version} ({stage}): {type(error).__name__}: {error}"
            ) from error
        if not np.all(np.isfinite(scores)):
            raise ReloadRejected(f"{name} v{version} ({stage}) gave non-finite warm-up predictions")
        return Challenger(model, stage)

    def _lookups(self) -> tuple[Any, str | None]:
        """The latest complete snapshot's lookups and its partition (None, None without one)."""
        asset, index = self.served.snapshot_asset, self.served.lookups
        if asset is None or index is None:
            return None, None
        partitions = self.snapshots.partitions(asset)
        if not partitions:
            raise ReloadRejected("no online feature snapshot has been materialized")
        return index(self.snapshots.read(asset, partitions[-1])), partitions[-1]

    def describe(self) -> dict[str, Any]:
        live = self.live
        if live is None:
            return {"name": self.served.registered_model, "ready": False}
        model = live.model
        return {
            "name": model.name,
            "version": model.version,
            "run_id": model.run_id,
            "trained_on": model.trained_on,
            "predictor": model.predictor.kind,
            "task": self.served.task,
            **({"decision_threshold": model.threshold} if self.served.task != "regression" else {}),
            "snapshot": live.snapshot,
            "loaded_at": model.loaded_at,
            "ready": True,
            "rollout": self._rollout(live),
            **({"prediction_log": self.log_figures(self.log)} if self.log is not None else {}),
        }

    def log_figures(self, log: PredictionLog) -> dict[str, int]:
        """The prediction log's figures: this process's, and the shadow process's."""
        figures = log.figures()
        for name, value in self.shadow.log_figures.items():
            figures[name] += value
        return figures

    def count_challenger(self, challenger: Challenger, outcome: Outcome) -> None:
        """Count what the challenger did on requests in its stats and ``/metrics``."""
        challenger.stats.count(outcome)
        version = challenger.model.version
        if outcome.failed:
            self.metrics.model_errors.labels(version, CHALLENGER).inc(outcome.failed)
        if outcome.latency_ms is not None:
            self.metrics.model_seconds.labels(version, CHALLENGER).observe(
                outcome.latency_ms / 1000
            )

    def _rollout(self, live: Live) -> dict[str, Any]:
        challenger = live.challenger
        if challenger is None:
            return {"stage": "full", "challenger": None}
        return {
            "stage": challenger.stage,
            "canary_share": self.served.rollout.canary_share,
            "challenger": {
                "version": challenger.model.version,
                "run_id": challenger.model.run_id,
                **challenger.stats.summary(),
            },
        }


@dataclass(frozen=True)
class Scores:
    """A request scored: the champion's scores and, where the canary answers it, the
    challenger's (a shadow's come later, from ``serving.shadow``)."""

    ids: Any
    champion: np.ndarray
    canary: np.ndarray | None = None
    canary_ms: float | None = None
    canary_failed: bool = False


def _score(live: Live, served: ServedModel, items: list) -> Scores:
    """Score ``items`` with the champion and, when the canary answers the request, with the
    challenger on the same inputs; a failing canary is counted, and the champion answers."""
    if not items:
        return Scores([], np.zeros(0))
    columns = served.columns(live.lookups, items)
    ids = columns[served.id_column]
    predictor = live.model.predictor
    inputs = predictor.inputs(columns)
    champion = predictor.predict_inputs(inputs)
    challenger = live.challenger
    if challenger is None or not challenger.answers(ids[0], served.rollout.canary_share):
        return Scores(ids, champion)
    began = time.perf_counter()
    try:
        other = challenger.model.predictor
        shared = inputs if other.kind == predictor.kind else other.inputs(columns)
        scores = other.predict_inputs(shared)
        if len(scores) != len(items) or not np.all(np.isfinite(scores)):
            raise ValueError("non-finite or missing scores")
    except Exception as error:
        log.warning("challenger v%s failed to score: %s", challenger.model.version, error)
        return Scores(ids, champion, canary_ms=0.0, canary_failed=True)
    return Scores(ids, champion, scores, (time.perf_counter() - began) * 1000)


def _outside(served: ServedModel, live: Live, items: Sequence[Any]) -> list[int]:
    """Positions of the items whose date the loaded snapshot does not cover."""
    if live.covers is None:
        return []
    field, (first, end) = served.snapshot_date_field, live.covers
    return [i for i, item in enumerate(items) if not first <= getattr(item, field) < end]


def _not_covered(served: ServedModel, live: Live, item: Any) -> str:
    first, end = live.covers  # type: ignore[misc]
    last = end - dt.timedelta(days=1)
    days = str(first) if first == last else f"{first} to {last}"
    day = getattr(item, served.snapshot_date_field)  # type: ignore[arg-type]
    return f"{day} is outside the loaded feature snapshot, which covers {days}"


def _warnings(served: ServedModel, live: Live, items: Sequence[Any], outside: list[int]):
    """Each item's warnings (one shared empty tuple for the items that have none)."""
    warnings: list[Any] = [()] * len(items)
    for i in outside:
        message = f"{_not_covered(served, live, items[i])}: its lookups took their defaults"
        warnings[i] = (
            {"code": openapi.DATE_OUTSIDE_SNAPSHOT, "field": served.snapshot_date_field,
             "message": message},
        )  # fmt: skip
    return warnings


def _refusal(served: ServedModel, live: Live, items, outside: list[int], is_list: bool) -> list:
    """The 422 errors of items dated outside the snapshot, shaped as validation errors."""
    field = served.snapshot_date_field
    return [
        {"type": openapi.DATE_OUTSIDE_SNAPSHOT, "loc": [i, field] if is_list else [field],
         "msg": _not_covered(served, live, items[i])}
        for i in outside
    ]  # fmt: skip


def _unpredicted(scores: np.ndarray, is_list: bool) -> list[dict]:
    """The 422 errors of the items the model has no prediction for."""
    return [
        {"type": openapi.NO_PREDICTION, "loc": [int(i)] if is_list else [],
         "msg": "the model has no prediction for this item (a forecaster: its date is past "
                "the model's horizon or before its series)"}
        for i in np.flatnonzero(~np.isfinite(scores))
    ]  # fmt: skip


def _answers(
    served: ServedModel, model: LoadedModel, ids, scores: np.ndarray, warnings: Sequence[Any]
) -> list[dict]:
    """One answer per item: its id, the prediction (classifiers: probability and label) and
    its warnings."""
    if served.task == "binary_classification":
        threshold = model.threshold
        return [
            {served.id_column: str(i), served.score_field: float(s),
             served.prediction: bool(s >= threshold), "warnings": w}
            for i, s, w in zip(ids, scores, warnings, strict=True)
        ]  # fmt: skip
    return [
        {served.id_column: str(i), served.prediction: float(s), "warnings": w}
        for i, s, w in zip(ids, scores, warnings, strict=True)
    ]


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
    warnings = _warnings(served, live, items, outside)
    payload = {
        "model_version": chosen.version,
        "request_id": uuid.uuid4().hex,
        "predictions": _answers(served, chosen, ids, scores, warnings),
    }
    return Response(json.dumps(payload), media_type="application/json")


def _record(
    service: Service,
    metrics: ServiceMetrics,
    live: Live,
    scored: Scores,
    items: list,
    request_id: str,
    began: float,
    body: bytes,
    is_list: bool,
) -> None:
    """Queue the champion's predictions for the prediction log and hand the challenger's part
    on: the canary's scores recorded now, a shadow's queued for the shadow process
    (``serving.shadow_process``; no I/O and no second model call here)."""
    canary = scored.canary is not None or scored.canary_failed
    champion_ms = (time.perf_counter() - began) * 1000 - (scored.canary_ms or 0.0)
    metrics.model_seconds.labels(live.model.version, CHAMPION).observe(champion_ms / 1000)
    served_at = time.time()
    if service.log is not None:
        service.log.append(
            Scored(request_id, served_at, champion_ms, live.model.version, CHAMPION, "full",
                   not canary, items, scored.ids, scored.champion, None if is_list else body)
        )  # fmt: skip
    challenger = live.challenger
    if challenger is None:
        return
    threshold = live.model.threshold
    if canary:
        compared = Compared(threshold, challenger, live.lookups, items, scored.ids,
                            scored.champion, request_id, served_at, body)  # fmt: skip
        service.canary([compared], [scored.canary], scored.canary_ms)
        service.count_challenger(challenger, service.canary.take())
    else:
        service.shadow.submit(
            Shadowed(challenger, live.lookups, live.snapshot, threshold, request_id, served_at,
                     body, scored.ids, scored.champion)
        )  # fmt: skip


def _freeze_heap() -> None:
    """Collect, then move every object alive to the collector's permanent generation: the
    libraries and models, hundreds of thousands of objects that live as long as the process.
    Otherwise each full collection scans them all (a third of a second on two cores, answering
    nothing), and the requests queued for the prediction log and the shadow, outliving the
    young generations, set one off every few seconds under load. Done when a model goes live;
    after a reload, what the replaced model left in reference cycles is collected first."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


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
    served: ServedModel, snapshots: TableSnapshots, token: str, log_url: str | None = None
) -> FastAPI:
    """The service of ``served``; with ``log_url``, every prediction goes to the prediction
    log there (``serving.prediction_log``)."""
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
    home = str(ml_assets_home())

    async def lifespan(app: FastAPI):
        try:
            service.live = await run_in_threadpool(service.prepare, None)
        except ReloadRejected as error:
            log.warning("starting without a model: %s", error)
        _freeze_heap()
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
        outside = _outside(served, live, items)
        if outside and served.outside_snapshot == "refuse":
            return _error(422, _refusal(served, live, items, outside, is_list))
        if request.headers.get(FORCED_VERSION) is not None:
            return _forced(service, live, request, items, outside)
        if len(items) > INLINE_ITEMS:  # keep the event loop free for other requests
            scored = await run_in_threadpool(_score, live, served, items)
        else:
            scored = _score(live, served, items)
        answering, scores = live.model, scored.champion
        if scored.canary is not None:
            answering, scores = live.challenger.model, scored.canary  # type: ignore[union-attr]
        if not np.all(np.isfinite(scores)):
            return _error(422, _unpredicted(scores, is_list))
        request.scope[VERSION_KEY] = answering.version
        metrics.predictions.labels(answering.version).inc(len(items))
        request_id = uuid.uuid4().hex
        payload = {
            "model_version": answering.version,
            "request_id": request_id,
            "predictions": _answers(
                served, answering, scored.ids, scores, _warnings(served, live, items, outside)
            ),
        }
        if items:
            _record(service, metrics, live, scored, items, request_id, began, body, is_list)
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
        await run_in_threadpool(_freeze_heap)
        log.info("now serving %s", service.describe())
        return JSONResponse(service.describe())

    return app
