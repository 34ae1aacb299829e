"""The pure rules beneath monitoring and rollouts: PSI, the rollout decision, canary buckets,
degradation, partition keys, the outcome join and the prediction log's batching."""

import datetime as dt
import json
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from pydantic import BaseModel

from ml_assets import pipelines
from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import Rollout
from ml_assets.contract.names import CANARY, SHADOW
from ml_assets.contract.prediction_log_layout import COLUMNS, OUTSIDE
from ml_assets.deployment.staged_rollout import decide, first_stage
from ml_assets.monitoring.drift import MISSING, OTHER, drift_table, psi, reference
from ml_assets.monitoring.outcomes import (
    degradation,
    last_trained_partition,
    live_predictions,
    scored_outcomes,
    window_keys,
)
from serving.challenger import agreeing, in_canary
from serving.prediction_log import PredictionLog, Scored

pytestmark = pytest.mark.unit

RULES = Rollout(shadow_requests=100, canary_requests=50, max_error_rate=0.02,
                max_latency_p95_ms=10, min_agreement=0.8)  # fmt: skip


def _stats(**given) -> dict:
    return {"requests": 100, "errors": 0, "error_rate": 0.0, "latency_p95_ms": 1.0,
            "agreement": 0.95, **given}  # fmt: skip


# PSI


def test_psi_of_the_training_distribution_itself_is_zero() -> None:
    values = pd.Series(np.random.default_rng(0).normal(size=5000))
    ref = reference(values, "x", categorical=False, bins=10)
    assert psi(ref.shares, ref.shares_of(values)) == pytest.approx(0.0, abs=1e-12)
    assert ref.shares[:-1] == pytest.approx(np.full(10, 0.1), abs=0.01)  # quantile bins


def test_a_shifted_feature_drifts_and_a_resample_does_not() -> None:
    rng = np.random.default_rng(1)
    training = pd.DataFrame({"x": rng.normal(size=20000), "c": rng.choice(["a", "b"], 20000)})
    ref = [reference(training["x"], "x", False, 10), reference(training["c"], "c", True, 10)]
    same = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(["a", "b"], 2000)})
    moved = pd.DataFrame({"x": rng.normal(1.0, size=2000), "c": ["z"] * 2000})
    assert drift_table(ref, same)["psi"].max() < 0.02
    table = drift_table(ref, moved).set_index("feature")
    assert table.loc["x", "psi"] > 0.25
    assert table.loc["c", "psi"] > 1 and table.loc["c", "moved_bin"] == OTHER


def test_missing_values_have_their_own_bin() -> None:
    ref = reference(pd.Series([1.0, 2.0, None, 4.0]), "x", False, 2)
    assert ref.labels()[-1] == MISSING
    assert ref.shares[-1] == pytest.approx(0.25)


@given(
    st.lists(st.floats(0.0, 1.0), min_size=2, max_size=12).filter(lambda v: sum(v) > 0),
    st.randoms(use_true_random=False),
)
@settings(max_examples=100, deadline=None)
def test_psi_is_never_negative(weights: list[float], rng) -> None:
    expected = np.array(weights) / sum(weights)
    actual = np.array(rng.sample(list(expected), len(expected)))
    assert psi(expected, actual) >= -1e-12


# the rollout decision


def test_a_stage_waits_for_its_requests() -> None:
    assert decide(SHADOW, _stats(requests=99), RULES).action == "wait"
    assert decide(SHADOW, _stats(), RULES).action == "advance"
    assert decide(CANARY, _stats(requests=50), RULES).action == "promote"


def test_errors_roll_back_at_once_and_bars_at_the_end_of_a_stage() -> None:
    early = decide(SHADOW, _stats(requests=10, errors=3, error_rate=0.3), RULES)
    assert early.action == "roll_back" and "3 failed scorings" in early.reason
    slow = decide(SHADOW, _stats(latency_p95_ms=11.0), RULES)
    assert slow.action == "roll_back" and "p95" in slow.reason
    contrary = decide(CANARY, _stats(requests=50, agreement=0.5), RULES)
    assert contrary.action == "roll_back" and "agreement" in contrary.reason


def test_outcomes_where_they_exist_overrule_agreement() -> None:
    differs = _stats(agreement=0.1)  # a retrained model after a shift disagrees with the old
    better = {"paired": 500, "decision": "promote", "reason": "-12 MAE"}
    worse = {"paired": 500, "decision": "keep", "reason": "+12 MAE"}
    too_few = {"paired": 5, "decision": "undecided", "reason": "5 items"}
    assert decide(SHADOW, differs, RULES, better).action == "advance"
    assert decide(SHADOW, _stats(), RULES, worse).action == "roll_back"
    assert decide(SHADOW, differs, RULES, too_few).action == "roll_back"  # agreement decides


def test_without_a_shadow_a_version_starts_as_a_canary() -> None:
    assert first_stage(RULES) == SHADOW
    assert first_stage(Rollout(shadow_requests=0)) == CANARY
    assert decide(SHADOW, _stats(), Rollout(shadow_requests=100, canary_requests=0)).action == (
        "promote"
    )


@given(
    requests=st.integers(0, 500),
    errors=st.integers(0, 500),
    p95=st.floats(0, 100),
    agreement=st.floats(0, 1),
    stage=st.sampled_from([SHADOW, CANARY]),
)
@settings(max_examples=200, deadline=None)
def test_nothing_that_misses_a_bar_is_ever_promoted(requests, errors, p95, agreement, stage):
    errors = min(errors, requests)
    stats = _stats(requests=requests, errors=errors, latency_p95_ms=p95, agreement=agreement,
                   error_rate=errors / requests if requests else 0.0)  # fmt: skip
    action = decide(stage, stats, RULES).action
    if action in ("advance", "promote"):
        assert stats["error_rate"] <= RULES.max_error_rate
        assert p95 <= RULES.max_latency_p95_ms and agreement >= RULES.min_agreement


# canary buckets and agreement


def test_the_canary_share_is_sticky_and_about_its_size() -> None:
    keys = [f"flight-{i}" for i in range(20000)]
    chosen = [in_canary(k, 0.1) for k in keys]
    assert 0.09 < np.mean(chosen) < 0.11
    assert chosen == [in_canary(k, 0.1) for k in keys]
    assert all(in_canary(k, 0.2) for k, c in zip(keys, chosen, strict=True) if c)  # nested


def test_agreement_by_tolerance_or_by_decision() -> None:
    a, b = np.array([0.0, 10.0, 20.0]), np.array([5.0, 10.0, 40.0])
    assert agreeing("regression", a, b, (0.5, 0.5), tolerance=5.0) == 2
    p, q = np.array([0.2, 0.6, 0.9]), np.array([0.4, 0.4, 0.95])
    # decisions at each version's own threshold: [no, yes, yes] and [yes, yes, yes]
    assert agreeing("binary_classification", p, q, (0.5, 0.3), tolerance=0.0) == 2


# degradation, outcomes and windows


def test_degradation_looks_in_the_metrics_bad_direction() -> None:
    assert degradation("regression", "mae", 13.0, 10.0, 0.25).degraded
    assert not degradation("regression", "mae", 12.0, 10.0, 0.25).degraded
    assert degradation("binary_classification", "roc_auc", 0.5, 0.7, 0.25).degraded
    assert not degradation("binary_classification", "roc_auc", 0.9, 0.7, 0.25).degraded


def test_outcomes_join_by_item_and_callers_predictions_count_once() -> None:
    outcomes = pd.DataFrame({"id": [1, 2, 3], "y": [10.0, np.nan, 30.0]})
    batch = pd.DataFrame({"id": [1, 2, 3], "predicted_y": [11.0, 12.0, 13.0],
                          "model_version": "4"})  # fmt: skip
    served = pd.DataFrame({"model_version": ["4", "5"], "role": ["champion", "challenger"],
                           "stage": ["full", "shadow"], "returned": [True, False],
                           "item_id": ["3", "3"], "score": [29.0, 50.0]})  # fmt: skip
    rows = scored_outcomes("2013-02-01", outcomes, "id", "y", batch, "predicted_y", served)
    assert len(rows) == 5 and rows["outcome"].isna().sum() == 1
    live = live_predictions(rows, "4", after="2013-01-31")
    assert sorted(live["score"]) == [11.0, 12.0, 29.0]  # item 3 as served, not as batch
    assert live_predictions(rows, "4", after="2013-02-01").empty  # trained on it


def test_partition_helpers() -> None:
    assert last_trained_partition("2013-01-08…2013-01-28") == "2013-01-28"
    assert last_trained_partition("2013-01-08…2013-01-28 (21 partitions)") == "2013-01-28"
    assert window_keys(["a", "b", "c", "d"], "c", 2) == ["b", "c"]
    assert window_keys(["a", "b", "c", "d"], "a", 7) == ["a"]
    flights = pipelines.declaration("flights").partitions
    taxi = pipelines.declaration("taxi").partitions
    assert flights.key_of(dt.date(2013, 7, 4)) == "2013-07-04"
    assert flights.key_of(dt.date(2014, 1, 1)) is None
    assert taxi.key_of(dt.date(2022, 3, 17)) == "2022-03-01"
    assert taxi.key_of(dt.date(2022, 5, 1)) is None


# the prediction log


class Item(BaseModel):
    day: dt.date
    x: float


def _scored(n: int, day: str = "2013-01-02", request: str = "r") -> Scored:
    items = [Item(day=dt.date.fromisoformat(day), x=float(i)) for i in range(n)]
    return Scored(request, 1.0e9, 1.5, "3", "champion", "full", True, items,
                  [f"id-{i}" for i in range(n)], np.arange(n, dtype=float))  # fmt: skip


def _log(tmp_path: Path, **kwargs) -> PredictionLog:
    def partition_of(item: Item, served_at: float) -> str | None:
        return item.day.isoformat() if item.day.year == 2013 else None

    return PredictionLog(str(tmp_path), "p", partition_of, 60.0, 10_000, **kwargs)


def _read(tmp_path: Path) -> pd.DataFrame:
    files = sorted((tmp_path / "p").glob("*/*.parquet"))
    return pd.concat([pd.read_parquet(f).assign(folder=f.parent.name) for f in files])


def test_a_flush_writes_one_file_per_partition_with_every_prediction(tmp_path: Path) -> None:
    log = _log(tmp_path)
    log.append(_scored(3, "2013-01-02", "a"))
    log.append(_scored(2, "2013-01-03", "b"))
    log.append(_scored(1, "2015-01-01", "c"))
    log.flush()
    rows = _read(tmp_path)
    assert list(rows.columns[:-1]) == list(COLUMNS)
    assert rows.groupby("folder").size().to_dict() == {"2013-01-02": 3, "2013-01-03": 2,
                                                       OUTSIDE: 1}  # fmt: skip
    assert json.loads(rows["request"].iloc[0]) == {"day": "2013-01-02", "x": 0.0}
    assert log.figures() == {"pending": 0, "written": 6, "dropped": 0, "outside_partitions": 1,
                             "write_failures": 0}  # fmt: skip
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failed_write_is_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    blocker = tmp_path / "p"
    blocker.write_text("a file where the log's folder should be")
    log = _log(tmp_path)
    log.append(_scored(4))
    log.flush()
    assert log.figures()["write_failures"] == 1 and log.figures()["pending"] == 4
    blocker.unlink()
    log.flush()
    assert len(_read(tmp_path)) == 4 and log.figures()["pending"] == 0


def test_a_full_queue_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    log = _log(tmp_path, max_pending=6)  # 9 wait: the oldest request (3) goes
    for name in "abc":
        log.append(_scored(3, request=name))
    log.flush()
    rows = _read(tmp_path)
    assert set(rows["request_id"]) == {"b", "c"} and log.figures()["dropped"] == 3


def test_stopping_flushes_what_waits(tmp_path: Path) -> None:
    log = _log(tmp_path)
    log.start()
    log.append(_scored(2))
    log.stop()
    assert len(_read(tmp_path)) == 2


def test_seasonal_features_are_compared_with_the_same_months_and_calendar_ones_not_at_all() -> None:
    """Taxi's ``distance`` declared seasonal (longer trips in March), ``hour`` unwatched: March
    compared with the train split's March rows raises no drift, where the whole split would."""
    import dagster as dg

    from ml_assets.modeling.layer import PARTITION_COLUMN, SPLIT_COLUMN
    from ml_assets.monitoring import feature_drift

    declared = pipelines.declaration("taxi")
    monitoring = declared.monitoring.model_copy(
        update={"drift_reference": {"distance": "same_season", "hour": "none"}}
    )
    declaration = declared.model_copy(update={"monitoring": monitoring})
    model = declaration.model
    rng = np.random.default_rng(3)
    months = ["2022-01-01", "2022-02-01", "2022-03-01"]

    def rows(month: str, n: int) -> pd.DataFrame:
        frame = pd.DataFrame(
            {c: rng.choice(["a", "b"], n) for c in model.categorical}
            | {c: rng.normal(size=n) for c in model.numeric}
        )
        frame["distance"] = rng.normal(10.0 if month == months[-1] else 2.0, 1.0, n)
        frame["hour"] = rng.integers(0, 24, n) + (12 if month == months[-1] else 0)
        return frame

    training = pd.concat(
        [rows(m, 2000).assign(**{PARTITION_COLUMN: m, SPLIT_COLUMN: "train"}) for m in months]
    )
    march = rows(months[-1], 1000)

    @dg.asset(
        key=asset_key(declaration, model.features_asset),
        partitions_def=partitions_definition(declaration.partitions),
    )
    def features() -> dict[str, pd.DataFrame]:  # as the platform's IO manager loads partitions
        return {months[-1]: march}

    @dg.asset(key=asset_key(declaration, "training_set"))
    def training_set() -> pd.DataFrame:
        return training

    result = dg.materialize_to_memory(
        [features, training_set, feature_drift.build(declaration)], partition_key=months[-1]
    )
    table = result.asset_value(asset_key(declaration, "feature_drift"))[months[-1]]
    by_feature = table.set_index("feature")
    assert "hour" not in by_feature.index
    assert by_feature.loc["distance", "reference"] == "train split, month 3"
    assert by_feature.loc["distance", "psi"] < 0.1  # against all three months: several units
    (event,) = [
        e.materialization for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == asset_key(declaration, "feature_drift")
    ]  # fmt: skip
    assert "hour (declared unwatched)" in event.metadata["unwatched"].value
