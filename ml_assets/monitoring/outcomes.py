"""Predictions meet outcomes: the joins and figures behind ``live_performance`` and
``rollout_comparison`` (pure functions of frames)."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_assets.contract.tasks import LIVE_METRICS, higher_is_better

SCORED_COLUMNS = (
    "partition", "source", "model_version", "role", "stage", "returned", "item_id", "score",
    "outcome",
)  # fmt: skip
"""One prediction with its outcome (NaN until it lands): what ``live_performance`` stores."""
SERVED, BATCH = "served", "batch"


def scored_outcomes(
    partition: str,
    outcomes: pd.DataFrame,
    id_column: str,
    target: str,
    batch: pd.DataFrame | None,
    batch_score: str,
    served: pd.DataFrame | None,
) -> pd.DataFrame:
    """The partition's batch and served predictions, each beside its item's outcome."""
    actual = pd.Series(
        outcomes[target].to_numpy(dtype="float64"), index=outcomes[id_column].astype(str)
    )
    actual = actual[~actual.index.duplicated()]
    frames = []
    if batch is not None and len(batch):
        frames.append(
            pd.DataFrame(
                {
                    "source": BATCH,
                    "model_version": batch["model_version"].astype(str).to_numpy(),
                    "role": "champion",
                    "stage": "full",
                    "returned": True,
                    "item_id": batch[id_column].astype(str).to_numpy(),
                    "score": batch[batch_score].to_numpy(dtype="float64"),
                }
            )
        )
    if served is not None and len(served):
        frames.append(
            served.loc[:, ["model_version", "role", "stage", "returned", "item_id", "score"]]
            .astype({"model_version": str, "item_id": str, "score": "float64"})
            .assign(source=SERVED)
        )
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in SCORED_COLUMNS})
    rows = pd.concat(frames, ignore_index=True)
    rows["partition"] = partition
    rows["outcome"] = actual.reindex(rows["item_id"]).to_numpy()
    return rows.loc[:, list(SCORED_COLUMNS)].astype({"returned": bool})


def _dtype(column: str) -> str:
    return {"score": "float64", "outcome": "float64", "returned": "bool"}.get(column, "object")


def metric_values(task: str, outcome: np.ndarray, score: np.ndarray) -> dict[str, float | None]:
    """Every live metric of the task for the predictions with an outcome (None: it cannot be
    computed, e.g. ROC AUC of a single class)."""
    from ml_assets.modeling.metrics import metric_value

    known = ~np.isnan(outcome)
    y, s = outcome[known], score[known]
    values: dict[str, float | None] = {}
    for metric in LIVE_METRICS[task]:
        one_class = task == "binary_classification" and len(np.unique(y)) < 2
        if len(y) == 0 or (metric == "roc_auc" and one_class):
            values[metric] = None
        else:
            values[metric] = metric_value(metric, y, s)
    return values


def live_predictions(rows: pd.DataFrame, version: str, after: str | None) -> pd.DataFrame:
    """The predictions of ``version`` that callers got, one per item: served first, then the
    batch predictions of items not served; only of partitions after ``after`` (the last one it
    trained on), where its figures are out of sample."""
    chosen = rows[(rows["model_version"] == version) & rows["returned"]]
    if after is not None:
        chosen = chosen[chosen["partition"] > after]
    served = chosen[chosen["source"] == SERVED]
    batch = chosen[(chosen["source"] == BATCH) & ~chosen["item_id"].isin(served["item_id"])]
    return pd.concat([served, batch], ignore_index=True)


@dataclass(frozen=True)
class Degradation:
    degraded: bool
    live: float
    test: float
    change: float
    """Relative change in the bad direction (0.3: 30% worse)."""


def degradation(task: str, metric: str, live: float, test: float, bar: float) -> Degradation:
    """Whether ``live`` is worse than ``test`` by more than ``bar`` (a share of ``test``)."""
    worse = (test - live) if higher_is_better(task, metric) else (live - test)
    change = worse / abs(test) if test else (np.inf if worse > 0 else 0.0)
    return Degradation(bool(change > bar), live, test, float(change))


def bootstrap_interval(
    task: str,
    metric: str,
    outcome: np.ndarray,
    score: np.ndarray,
    samples: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """A percentile bootstrap interval of ``metric`` (None: too few outcomes)."""
    from ml_assets.modeling.metrics import metric_value

    known = ~np.isnan(outcome)
    y, s = outcome[known], score[known]
    if len(y) < 20:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        pick = rng.integers(0, len(y), len(y))
        if task == "binary_classification" and metric == "roc_auc" and len(set(y[pick])) < 2:
            continue
        values.append(metric_value(metric, y[pick], s[pick]))
    if not values:
        return None
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def last_trained_partition(trained_on: str | None) -> str | None:
    """The last partition of a version's ``feature_partitions`` tag (``first…last``)."""
    if not trained_on:
        return None
    return trained_on.split("…")[-1].split(" ")[0]


def window_keys(keys: Sequence[str], key: str, size: int) -> list[str]:
    """``key`` and the ``size - 1`` partition keys before it, in order."""
    at = list(keys).index(key)
    return list(keys[max(0, at - size + 1) : at + 1])
