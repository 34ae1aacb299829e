"""A request scored on the live model: the champion's scores (and the canary's, when it
answers the request), each item's answer and warnings, and what goes to the prediction log and
the shadow afterwards, off the request path."""

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml_assets.contract.names import CHAMPION
from serving import openapi
from serving.prediction_log import Scored
from serving.predictors import LoadedModel
from serving.prometheus_metrics import ServiceMetrics
from serving.service import Live, Service
from serving.shadow import Compared
from serving.shadow_process import Shadowed
from serving.spec import ServedModel

log = logging.getLogger("serving")


@dataclass(frozen=True)
class Scores:
    """A request scored: the champion's scores and, where the canary answers it, the
    challenger's (a shadow's come later, from ``serving.shadow``)."""

    ids: Any
    champion: np.ndarray
    canary: np.ndarray | None = None
    canary_ms: float | None = None
    canary_failed: bool = False


def score(live: Live, served: ServedModel, items: list) -> Scores:
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


def outside(served: ServedModel, live: Live, items: Sequence[Any]) -> list[int]:
    """Positions of the items whose date the loaded snapshot does not cover."""
    if live.covers is None:
        return []
    field, (first, end) = served.snapshot_date_field, live.covers
    return [i for i, item in enumerate(items) if not first <= getattr(item, field) < end]


def not_covered(served: ServedModel, live: Live, item: Any) -> str:
    first, end = live.covers  # type: ignore[misc]
    last = end - dt.timedelta(days=1)
    days = str(first) if first == last else f"{first} to {last}"
    day = getattr(item, served.snapshot_date_field)  # type: ignore[arg-type]
    return f"{day} is outside the loaded feature snapshot, which covers {days}"


def warnings(served: ServedModel, live: Live, items: Sequence[Any], outside: list[int]):
    """Each item's warnings (one shared empty tuple for the items that have none)."""
    warnings: list[Any] = [()] * len(items)
    for i in outside:
        message = f"{not_covered(served, live, items[i])}: its lookups took their defaults"
        warnings[i] = (
            {"code": openapi.DATE_OUTSIDE_SNAPSHOT, "field": served.snapshot_date_field,
             "message": message},
        )  # fmt: skip
    return warnings


def refusal(served: ServedModel, live: Live, items, outside: list[int], is_list: bool) -> list:
    """The 422 errors of items dated outside the snapshot, shaped as validation errors."""
    field = served.snapshot_date_field
    return [
        {"type": openapi.DATE_OUTSIDE_SNAPSHOT, "loc": [i, field] if is_list else [field],
         "msg": not_covered(served, live, items[i])}
        for i in outside
    ]  # fmt: skip


def unpredicted(scores: np.ndarray, is_list: bool) -> list[dict]:
    """The 422 errors of the items the model has no prediction for."""
    return [
        {"type": openapi.NO_PREDICTION, "loc": [int(i)] if is_list else [],
         "msg": "the model has no prediction for this item (a forecaster: its date is past "
                "the model's horizon or before its series)"}
        for i in np.flatnonzero(~np.isfinite(scores))
    ]  # fmt: skip


def answers(
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


def record(
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
