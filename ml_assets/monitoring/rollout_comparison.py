"""``rollout_comparison``: the champion and the challenger side by side on live outcomes, with
confidence intervals and a decision a person can act on.

It reads the served predictions with outcomes (``live_performance``) of the last
``monitoring.comparison_partitions`` partitions that have any. In shadow and as a canary the
challenger is scored on the same requests as the champion, so the comparison is paired: the
difference of the two versions' metric on the items both scored, with a bootstrap interval.
The decision: ``promote`` when the interval lies wholly on the challenger's better side,
``keep`` (the champion) when wholly on its worse side, ``undecided`` otherwise or without
enough outcomes. Acting on it is the rollout job with ``action: promote`` or ``roll_back``
(from the launchpad, or ``ml-assets rollout PIPELINE --promote``).
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from ml_assets.automation import summarize_upstream
from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.tasks import higher_is_better
from ml_assets.monitoring.layer import MAY_BE_MISSING, common
from ml_assets.monitoring.outcomes import SERVED, bootstrap_interval, metric_values
from resources.mlflow_tracking import MlflowTracking

MIN_PAIRED = 30
"""Fewer items scored by both versions with an outcome: undecided."""


def compare(task: str, metric: str, rows: pd.DataFrame, champion: str | None) -> dict[str, Any]:
    """Per-version live figures and the paired decision (see the module's docstring)."""
    served = rows[(rows["source"] == SERVED) & rows["outcome"].notna()]
    versions = []
    for version, group in served.groupby("model_version"):
        outcome, score = group["outcome"].to_numpy(dtype="float64"), group["score"].to_numpy()
        interval = bootstrap_interval(task, metric, outcome, score)
        versions.append(
            {"version": version, "role": group["role"].iloc[0], "outcomes": len(group),
             metric: metric_values(task, outcome, score)[metric],
             "ci_low": interval[0] if interval else None,
             "ci_high": interval[1] if interval else None}
        )  # fmt: skip
    challengers = sorted({v["version"] for v in versions if v["role"] == "challenger"}, key=int)
    result: dict[str, Any] = {"versions": versions, "decision": "undecided", "paired": 0}
    if champion is None or not challengers:
        result["reason"] = "no challenger has served predictions with outcomes"
        return result
    challenger = challengers[-1]
    pairs = served[served["model_version"].isin([champion, challenger])].pivot_table(
        index=["partition", "item_id"],
        columns="model_version",
        values=["score", "outcome"],
        aggfunc="first",
    )
    both = pairs.dropna()
    result.update(champion=champion, challenger=challenger, paired=len(both))
    if len(both) < MIN_PAIRED:
        result["reason"] = f"{len(both)} items scored by both with an outcome (< {MIN_PAIRED})"
        return result
    y = both[("outcome", champion)].to_numpy(dtype="float64")
    old, new = (both[("score", v)].to_numpy(dtype="float64") for v in (champion, challenger))
    low, high = _paired_interval(task, metric, y, old, new)
    better_is_up = higher_is_better(task, metric)
    improves = (low > 0) if better_is_up else (high < 0)
    worsens = (high < 0) if better_is_up else (low > 0)
    result.update(difference_low=low, difference_high=high)
    result["decision"] = "promote" if improves else "keep" if worsens else "undecided"
    result["reason"] = (
        f"{metric} of v{challenger} - v{champion} over {len(both)} paired items: "
        f"[{low:+.4g}, {high:+.4g}] (95%)"
    )
    return result


def _paired_interval(
    task: str, metric: str, y: np.ndarray, old: np.ndarray, new: np.ndarray, samples: int = 300
) -> tuple[float, float]:
    from ml_assets.modeling.metrics import metric_value

    rng = np.random.default_rng(0)
    differences = []
    for _ in range(samples):
        pick = rng.integers(0, len(y), len(y))
        if metric == "roc_auc" and len(np.unique(y[pick])) < 2:
            continue
        differences.append(metric_value(metric, y[pick], new[pick]) - metric_value(
            metric, y[pick], old[pick]))  # fmt: skip
    return float(np.percentile(differences, 2.5)), float(np.percentile(differences, 97.5))


def build(declaration: PipelineDeclaration) -> dg.AssetsDefinition:
    model, monitoring = declaration.model, declaration.monitoring
    metric = model.live_metric(monitoring)

    @dg.asset(
        key=asset_key(declaration, "rollout_comparison"),
        description=(
            f"The {declaration.name} champion and challenger on live outcomes: {metric} with "
            "95% intervals and the paired decision (promote, keep, undecided)."
        ),
        kinds={"pandas"},
        ins={
            "live_performance": dg.AssetIn(
                asset_key(declaration, "live_performance"),
                partition_mapping=dg.AllPartitionMapping(),
                metadata=MAY_BE_MISSING,
            ),
        },
        io_manager_key="json_io_manager",
        automation_condition=summarize_upstream(),
        **common(declaration),
    )
    def rollout_comparison(
        context: dg.AssetExecutionContext, mlflow: MlflowTracking, live_performance: Mapping
    ) -> dg.Output[dict]:
        from ml_assets.deployment import registry

        mlflow.use()
        champion = registry.alias_version(model.registered_model_name, registry.CHAMPION)
        recent = []
        for partition in reversed(list(live_performance)):
            rows = live_performance[partition]
            if (rows["source"] == SERVED).any():
                recent.append(rows)
            if len(recent) >= monitoring.comparison_partitions:
                break
        rows = pd.concat(recent, ignore_index=True) if recent else None
        if rows is None:
            result = {"versions": [], "decision": "undecided", "reason": "nothing served yet"}
        else:
            result = compare(model.task, metric, rows, champion)
        table = pd.DataFrame(result["versions"])
        return dg.Output(
            result,
            metadata={
                "decision": result["decision"],
                "reason": result.get("reason", ""),
                "paired_items": result.get("paired", 0),
                "versions": dg.MetadataValue.md(
                    table.round(4).to_markdown(index=False) if len(table) else "(none)"
                ),
                "act": "Launch the rollout job with action promote or roll_back, or run "
                f"`ml-assets rollout {declaration.name} --promote` / `--roll-back`.",
            },
        )

    return rollout_comparison
