"""What the service needs to know about the model it serves, built from a pipeline's
declaration and its serving hooks (never from its asset code)."""

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ml_assets.contract.declaration import Monitoring, PipelineDeclaration, Rollout
from ml_assets.contract.model_format import Features, model_inputs
from ml_assets.contract.pipeline import ServingHooks
from ml_assets.contract.requests import request_model


def score_field(task: str, prediction: str) -> str:
    """The response field holding the model's number: the prediction itself (regression), or
    the probability that it is 1 (classification, beside the decided label ``prediction``)."""
    return f"{prediction}_probability" if task == "binary_classification" else prediction


@dataclass(frozen=True)
class ServedModel:
    pipeline: str
    registered_model: str
    """The MLflow registered model; the service serves its ``champion`` alias."""
    task: str
    request: type[BaseModel]
    """One item of ``POST /predict``: the declared request fields and their rules."""
    features: Features
    """The model's input columns."""
    snapshot_asset: Sequence[str] | None
    """Asset key path of the online feature snapshot items are looked up in, if any."""
    lookups: Callable[[Mapping[str, pd.DataFrame]], Any] | None
    """Index a snapshot's tables for lookup (done once per reload)."""
    columns: Callable[[Any, Sequence[BaseModel]], Mapping[str, np.ndarray]]
    """Feature columns of request items, computed with the pipeline's feature code, item by
    item: an item's features do not depend on the items beside it (one request's list, or the
    many requests ``serving.shadow`` computes at once)."""
    id_column: str
    """A feature column that identifies an item in the response."""
    prediction: str
    """Name of the predicted quantity in the response."""
    warm_up: Sequence[Mapping[str, Any]]
    """Request items scored before a model goes live; they must give finite predictions."""
    max_batch: int
    snapshot_date_field: str | None = None
    """The request field whose date the loaded snapshot must cover (None: no such check)."""
    outside_snapshot: Literal["warn", "refuse"] = "warn"
    """What an item dated outside the snapshot gets: a warning beside its prediction, or 422."""
    snapshot_dates: Callable[[str], tuple[dt.date, dt.date]] | None = None
    """The local dates ``[first, end)`` the snapshot of a partition covers."""
    rollout: Rollout = field(default_factory=Rollout)
    """The canary's share and what counts as agreeing with the champion."""
    monitoring: Monitoring = field(default_factory=Monitoring)
    """How often the prediction log is flushed."""
    partition_of: Callable[[BaseModel, float], str | None] = lambda item, served_at: None
    """The partition a served item's outcome lands in (None: outside the partitions)."""

    @property
    def score_field(self) -> str:
        return score_field(self.task, self.prediction)


def served_model(
    declaration: PipelineDeclaration, hooks: ServingHooks, max_batch: int | None = None
) -> ServedModel:
    """The champion of ``declaration``'s pipeline, as the prediction service serves it."""
    model, serving = declaration.model, declaration.serving
    snapshot = declaration.asset_path(serving.snapshot_asset) if serving.snapshot_asset else None
    return ServedModel(
        pipeline=declaration.name,
        registered_model=model.registered_model_name,
        task=model.task,
        request=request_model(declaration),
        features=model_inputs(declaration),
        snapshot_asset=snapshot,
        lookups=hooks.lookups,
        columns=hooks.columns,
        id_column=model.id_column,
        prediction=serving.prediction,
        warm_up=serving.warm_up,
        max_batch=max_batch or serving.max_batch,
        snapshot_date_field=serving.snapshot_date_field,
        outside_snapshot=serving.outside_snapshot,
        snapshot_dates=_partition_dates(declaration) if serving.snapshot_date_field else None,
        rollout=declaration.rollout,
        monitoring=declaration.monitoring,
        partition_of=_partition_of(declaration),
    )


def _partition_of(declaration: PipelineDeclaration) -> Callable[[BaseModel, float], str | None]:
    """The partition of a served item: that of its ``monitoring.event_date_field``, or else of
    the local date it was served on."""
    partitions = declaration.partitions
    dated = declaration.monitoring.event_date_field
    if dated is not None:
        return lambda item, served_at: partitions.key_of(getattr(item, dated))
    zone = ZoneInfo(partitions.timezone)
    return lambda item, served_at: partitions.key_of(
        dt.datetime.fromtimestamp(served_at, zone).date()
    )


def _partition_dates(declaration: PipelineDeclaration) -> Callable[[str], tuple[dt.date, dt.date]]:
    """The local dates ``[first, end)`` a partition's snapshot covers: the partition's time
    window in the declared time zone, and the days after it whose declared history windows
    end inside it (``features.nearest_days``: a forecast of the day after the last one read)."""
    partitions = declaration.partitions
    after = dt.timedelta(days=declaration.features.nearest_days)

    def dates(key: str) -> tuple[dt.date, dt.date]:
        first, end = partitions.window(key)
        return first, end + after

    return dates
