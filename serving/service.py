"""What a prediction service holds: the live model with its snapshot and challenger, and how a
reload prepares the next one beside it (``Service.prepare``) without touching the live one."""

import asyncio
import datetime as dt
import gc
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from ml_assets.contract.names import CHALLENGER, CHAMPION, STAGE_TAG, STAGES
from ml_assets.contract.requests import parse_item
from resources.table_snapshots import TableSnapshots
from serving import openapi
from serving.challenger import Challenger, Outcome
from serving.prediction_log import PredictionLog
from serving.predictors import LoadedModel, NoChampion, load_version, resolve_alias
from serving.prometheus_metrics import ServiceMetrics
from serving.shadow import Comparison
from serving.shadow_process import ChildSetup, ShadowDied, ShadowProcess
from serving.spec import ServedModel


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


def freeze_heap() -> None:
    """Collect, then move every object alive to the collector's permanent generation: the
    libraries and models, hundreds of thousands of objects that live as long as the process.
    Otherwise each full collection scans them all (a third of a second on two cores, answering
    nothing), and the requests queued for the prediction log and the shadow, outliving the
    young generations, set one off every few seconds under load. Done when a model goes live;
    after a reload, what the replaced model left in reference cycles is collected first."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
