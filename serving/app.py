"""The prediction service (FastAPI on uvicorn).

- ``POST /predict``: one item or a list; 422 names the bad field, 413 for oversize batches.
- ``GET /health`` (the process answers, and for which pipeline), ``GET /ready`` (a model is
  live), ``GET /model`` (version, run, trained-on partitions), ``GET /metrics`` (Prometheus).
- ``POST /admin/reload`` (bearer token): load the champion (or a given version) and the latest
  online feature snapshot beside the live model, score the warm-up items, then swap the two
  in one assignment, so every response comes wholly from the old model or the new one and no
  request fails during a rollout. A model that cannot be loaded or scores the warm-up items
  badly is rejected and the live one stays.
"""

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import TypeAdapter, ValidationError

from resources.table_snapshots import TableSnapshots
from serving.metrics import VERSION_KEY, MetricsMiddleware, ServiceMetrics
from serving.predictors import LoadedModel, NoChampion, load_version, resolve_alias
from serving.spec import ServedModel

CHAMPION = "champion"
BYTES_PER_ITEM = 1024
"""Request bodies above ``max_batch`` items of this size are refused before parsing (413)."""
INLINE_ITEMS = 32
"""Larger batches are scored on a worker thread, so single requests are not held up."""
log = logging.getLogger("serving")


@dataclass(frozen=True)
class Live:
    """What answers requests: a model and the feature snapshot its items are looked up in."""

    model: LoadedModel
    lookups: Any
    snapshot: str | None


class ReloadRejected(Exception):
    """A model or snapshot that must not go live; the live one stays."""


class Service:
    def __init__(self, served: ServedModel, snapshots: TableSnapshots, token: str) -> None:
        self.served, self.snapshots, self.token = served, snapshots, token
        self.live: Live | None = None
        self.reloading = asyncio.Lock()
        self.one = TypeAdapter(served.request)
        self.many = TypeAdapter(list[served.request])  # type: ignore[name-defined]

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
            warm_up = [self.served.request.model_validate(i) for i in self.served.warm_up]
            scores = model.predictor.predict(self.served.columns(lookups, warm_up))
        except ReloadRejected:
            raise
        except Exception as error:  # any failure to load or score keeps the live model
            raise ReloadRejected(f"{name} v{version}: {type(error).__name__}: {error}") from error
        if len(scores) != len(warm_up) or not np.all(np.isfinite(scores)):
            raise ReloadRejected(f"{name} v{version} gave non-finite warm-up predictions")
        return Live(model, lookups, snapshot)

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
        }


def _score(live: Live, served: ServedModel, items: list) -> tuple[Any, np.ndarray]:
    columns = served.columns(live.lookups, items)
    return columns, live.model.predictor.predict(columns) if items else np.zeros(0)


def _answers(served: ServedModel, model: LoadedModel, ids, scores: np.ndarray) -> list[dict]:
    """One answer per item: its id and the prediction (classifiers: probability and label)."""
    if served.task == "binary_classification":
        threshold = model.threshold
        return [
            {served.id_column: str(i), served.score_field: float(s),
             served.prediction: bool(s >= threshold)}
            for i, s in zip(ids, scores, strict=True)
        ]  # fmt: skip
    return [
        {served.id_column: str(i), served.prediction: float(s)}
        for i, s in zip(ids, scores, strict=True)
    ]


def _error(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def create_app(served: ServedModel, snapshots: TableSnapshots, token: str) -> FastAPI:
    service = Service(served, snapshots, token)
    metrics = ServiceMetrics()

    async def lifespan(app: FastAPI):
        try:
            service.live = await run_in_threadpool(service.prepare, None)
        except ReloadRejected as error:
            log.warning("starting without a model: %s", error)
        yield

    app = FastAPI(title=f"{served.registered_model} predictions", lifespan=lifespan)
    app.state.service = service
    routes = {"/predict", "/health", "/ready", "/model", "/metrics", "/admin/reload"}
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        limit = served.max_batch * BYTES_PER_ITEM
        if int(request.headers.get("content-length") or 0) > limit:
            return _error(413, f"request body over {limit} bytes")
        body = await request.body()
        if len(body) > limit:  # a chunked body has no content-length
            return _error(413, f"request body over {limit} bytes")
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
        if len(items) > INLINE_ITEMS:  # keep the event loop free for other requests
            columns, scores = await run_in_threadpool(_score, live, served, items)
        else:
            columns, scores = _score(live, served, items)
        metrics.predictions.labels(live.model.version).inc(len(items))
        ids = columns[served.id_column] if items else []
        payload = {
            "model_version": live.model.version,
            "predictions": _answers(served, live.model, ids, scores),
        }
        return Response(json.dumps(payload), media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "pipeline": served.pipeline}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        described = service.describe()
        request.scope[VERSION_KEY] = described.get("version")
        return JSONResponse(described, status_code=200 if described["ready"] else 503)

    @app.get("/model")
    async def model(request: Request) -> JSONResponse:
        described = service.describe()
        request.scope[VERSION_KEY] = described.get("version")
        return JSONResponse(described, status_code=200 if described["ready"] else 404)

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload")
    async def reload(request: Request) -> JSONResponse:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {service.token}".encode()):
            return _error(401, "admin calls need 'Authorization: Bearer <token>'")
        body = await request.body()
        try:
            version = json.loads(body).get("version") if body else None
        except (ValueError, AttributeError):
            return _error(422, [{"loc": ["body"], "msg": "expected {'version': str | null}"}])
        async with service.reloading:
            try:
                prepared = await run_in_threadpool(service.prepare, version)
            except ReloadRejected as error:
                return _error(422, f"model rejected, the live one stays: {error}")
            service.live = prepared  # the one switch: later requests see the new model
        log.info("now serving %s", service.describe())
        return JSONResponse(service.describe())

    return app
