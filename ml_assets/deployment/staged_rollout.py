"""Staged rollout: a new version goes shadow → canary → full, or is rolled back.

``decide`` is the rule, a pure function of what the service measured of the challenger at
its stage and of the declared ``rollout`` bars. ``start`` puts a registered version in its
first stage (``deployed_endpoint``); ``act`` carries a decision out (the rollout job, which
the rollout sensor launches when a decision is due, or a person from the launchpad): each
step changes the registry first and then reloads the service, which serves what the registry
says, and is recorded as an observation of ``deployed_endpoint``.
"""

from dataclasses import dataclass
from typing import Any, Literal

import dagster as dg
import pandas as pd

from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration, Rollout
from ml_assets.contract.names import CANARY, FULL, ROLLED_BACK, ROLLOUT_DECISION, SHADOW
from ml_assets.deployment import registry
from ml_assets.deployment.going_live import undone_on_failure
from ml_assets.monitoring.rollout_comparison import MIN_PAIRED
from resources.prediction_log_store import PredictionLogStore
from resources.prediction_services import ServiceUnavailable, ServingEndpoint
from resources.warehouse import Warehouse

Action = Literal["wait", "advance", "promote", "roll_back"]


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def first_stage(rules: Rollout) -> str:
    """Where a new version starts: shadow, or the canary when no shadow requests are asked."""
    if rules.shadow_requests > 0:
        return SHADOW
    return CANARY if rules.canary_requests > 0 else FULL


def decide(
    stage: str,
    stats: dict[str, Any],
    rules: Rollout,
    outcomes: dict[str, Any] | None = None,
) -> Decision:
    """What to do with a challenger at ``stage`` that measured ``stats`` (``GET /model``'s
    ``rollout.challenger``): roll back as soon as its errors exceed what the stage allows, or
    once the stage's requests are in and its error rate or latency miss a bar, or it is worse
    than the champion: on the actual outcomes where enough of its predictions have one
    (``outcomes``: ``rollout_comparison.compare``'s verdict, ``keep`` meaning worse), else by
    disagreeing with the champion; otherwise advance (shadow → canary) or promote; wait while
    the requests are not in."""
    needed = rules.shadow_requests if stage == SHADOW else rules.canary_requests
    requests, errors = stats.get("requests", 0), stats.get("errors", 0)
    allowed = rules.max_error_rate * max(needed, 1)
    if errors > allowed:
        return Decision(
            "roll_back", f"{errors} failed scorings, over the {allowed:g} that {needed} allow"
        )
    if requests < needed:
        return Decision("wait", f"{requests} of {needed} {stage} requests")
    misses = []
    if stats.get("error_rate", 0.0) > rules.max_error_rate:
        misses.append(f"error rate {stats['error_rate']:.3%} > {rules.max_error_rate:.3%}")
    p95 = stats.get("latency_p95_ms")
    if p95 is not None and p95 > rules.max_latency_p95_ms:
        misses.append(f"scoring p95 {p95:.2f} ms > {rules.max_latency_p95_ms:g} ms")
    agreement = stats.get("agreement")
    judged = outcomes is not None and outcomes.get("paired", 0) >= MIN_PAIRED
    if judged and outcomes["decision"] == "keep":  # type: ignore[index]
        misses.append(f"worse than the champion on outcomes: {outcomes['reason']}")  # type: ignore[index]
    elif not judged and agreement is not None and agreement < rules.min_agreement:
        misses.append(f"agreement with the champion {agreement:.1%} < {rules.min_agreement:.1%}")
    if misses:
        return Decision("roll_back", "; ".join(misses))
    held = f"held over {requests} {stage} requests"
    if stage == SHADOW and rules.canary_requests > 0:
        return Decision("advance", held)
    return Decision("promote", held)


def outcome_comparison(
    declaration: PipelineDeclaration,
    champion: str,
    challenger: str,
    log: PredictionLogStore,
    warehouse: Warehouse,
) -> dict[str, Any] | None:
    """The two versions' served predictions that have an outcome by now, compared
    (``rollout_comparison.compare``); None when the challenger has served none in any
    partition."""
    from ml_assets.monitoring.outcomes import scored_outcomes
    from ml_assets.monitoring.rollout_comparison import compare

    model = declaration.model
    features = asset_key(declaration, model.features_asset)
    keys = set(partitions_definition(declaration.partitions).get_partition_keys())
    stored = set(warehouse.stored_partitions(features))
    joined = []
    for partition in log.partitions(declaration.name):
        if partition not in keys or partition not in stored:
            continue
        served, _, _ = log.read(declaration.name, partition)
        served = served[served["model_version"].isin([champion, challenger])]
        if not (served["model_version"] == challenger).any():
            continue
        landed = warehouse.read(features, partition)
        joined.append(
            scored_outcomes(partition, landed, model.id_column, model.target, None, "", served)
        )
    if not joined:
        return None
    rows = pd.concat(joined, ignore_index=True)
    return compare(model.task, model.live_metric(declaration.monitoring), rows, champion)


def challenger_state(endpoint: ServingEndpoint) -> tuple[str, dict[str, Any]] | None:
    """The stage and the measured figures of the challenger the service is rolling out,
    summed over its replicas (``pooled``)."""
    return pooled(endpoint.describe_each())


def pooled(described: list[dict[str, Any] | None]) -> tuple[str, dict[str, Any]] | None:
    """One challenger's stage and figures from the ``GET /model`` of each replica (None: it
    does not answer, left out): requests, errors and items summed, the error rate and the
    agreement over the sums, the latency percentiles the worst replica's, ``since`` the last
    load. None when no replica rolls out a challenger, or the replicas disagree on which
    or at what stage (a reload is passing through them)."""
    answering = [d for d in described if d is not None]
    states = {_stage_and_version(d) for d in answering}
    if len(states) != 1 or None in states:
        return None
    stage = next(iter(states))[0]  # type: ignore[index]
    each = [d["rollout"]["challenger"] for d in answering]
    requests, errors, items = (
        sum(c.get(k, 0) for c in each) for k in ("requests", "errors", "items")
    )
    agreeing = sum(
        c["agreement"] * c.get("items", 0) for c in each if c.get("agreement") is not None
    )
    stats = {
        **each[0],
        "since": max(c["since"] for c in each),
        "requests": requests,
        "answered": sum(c.get("answered", 0) for c in each),
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "items": items,
        "agreement": agreeing / items if items else None,
        "replicas": len(each),
    }
    for key in ("latency_p50_ms", "latency_p95_ms"):
        measured = [c[key] for c in each if c.get(key) is not None]
        stats[key] = max(measured) if measured else None
    return stage, stats


def _stage_and_version(described: dict[str, Any]) -> tuple[str, str] | None:
    rollout = described.get("rollout") or {}
    if rollout.get("stage") not in (SHADOW, CANARY) or not rollout.get("challenger"):
        return None
    return rollout["stage"], rollout["challenger"]["version"]


def take_out(endpoint: ServingEndpoint, name: str, version: str, reason: str) -> None:
    """End ``version``'s rollout: tagged rolled back with ``reason``, and the service reloaded
    without it (the champion alone)."""
    registry.set_stage(name, version, ROLLED_BACK, reason)
    endpoint.reload()


def start(endpoint: ServingEndpoint, name: str, version: str, rules: Rollout) -> str:
    """Put ``version`` in its first stage beside the champion and have the service load it;
    on failure the version is marked rolled back and the service reloaded without it."""
    stage = first_stage(rules)
    registry.set_stage(name, version, stage)
    try:
        served = endpoint.reload()
        loaded = ((served.get("rollout") or {}).get("challenger") or {}).get("version")
        if loaded != version:
            raise ServiceUnavailable(f"the service loaded challenger {loaded}, not v{version}")
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        take_out(endpoint, name, version, reason)
        raise dg.Failure(f"Rolling out {name} v{version} in {stage} failed: {reason}") from error
    return stage


def act(
    endpoint: ServingEndpoint,
    name: str,
    version: str,
    stage: str,
    decision: Decision,
    log: Any,
) -> dict[str, Any]:
    """Carry ``decision`` out on the challenger ``version`` at ``stage``; the metadata of the
    observation that records it."""
    if decision.action == "advance":
        registry.set_stage(name, version, CANARY)
        endpoint.reload()
        new_stage = CANARY
    elif decision.action == "promote":
        before = registry.promote(name, version)
        with undone_on_failure(
            endpoint, name, before, version, f"Promoting {name} v{version}", log
        ):
            endpoint.reload_champion(version)
        registry.set_stage(name, version, FULL)
        new_stage = FULL
    elif decision.action == "roll_back":
        take_out(endpoint, name, version, decision.reason)
        new_stage = ROLLED_BACK
    else:
        raise ValueError(f"nothing to carry out for {decision.action!r}")
    log.info(f"{name} v{version}: {stage} → {new_stage} ({decision.reason})")
    return {
        ROLLOUT_DECISION: ROLLED_BACK if decision.action == "roll_back" else decision.action,
        "rollout/version": version,
        "rollout/from_stage": stage,
        "rollout/stage": new_stage,
        "rollout/reason": decision.reason,
    }
