"""Retraining is lazy: the first model trains once the features allow it, then the weekly cron
tick starts the whole model chain, once per tick."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from ml_assets import pipelines
from ml_assets.definitions import defs
from ml_assets.modeling.layer import MODEL_ASSET_NAMES
from ml_assets.pipelines.flights.assets import key

pytestmark = pytest.mark.unit

MODEL_KEYS = [key(name) for name in MODEL_ASSET_NAMES]


def _requested(result) -> set[dg.AssetKey]:
    return {k for k in MODEL_KEYS if result.get_num_requested(k)}


def test_model_chain_runs_on_the_weekly_tick_only(instance: dg.DagsterInstance) -> None:
    selection = dg.AssetSelection.assets(*MODEL_KEYS)

    def tick(when: datetime, cursor=None):
        return dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=selection,
            evaluation_time=when, cursor=cursor,
        )  # fmt: skip

    first = tick(datetime(2026, 11, 20, 12, tzinfo=UTC))  # a Friday
    assert _requested(first) == set()
    weekend = tick(datetime(2026, 11, 22, 12, tzinfo=UTC), first.cursor)  # Sunday: no tick yet
    assert _requested(weekend) == set()
    monday = tick(datetime(2026, 11, 23, 5, tzinfo=UTC), weekend.cursor)  # after Monday 04:00
    assert _requested(monday) == set(MODEL_KEYS)  # the whole chain, in one run
    again = tick(datetime(2026, 11, 23, 6, tzinfo=UTC), monday.cursor)  # handled: not twice
    assert key("training_set") not in _requested(again)


def test_the_first_model_trains_once_the_window_holds_enough_features(
    instance: dg.DagsterInstance,
) -> None:
    """A newcomer's first model: no cron tick needed once the training window can be split."""
    declared = pipelines.declaration("flights").model
    days = [
        (date.fromisoformat(declared.training.window_start) + timedelta(days=n)).isoformat()
        for n in range(declared.first_training_partitions)
    ]
    selection = dg.AssetSelection.assets(key("training_set"))
    when = datetime(2026, 11, 20, 12, tzinfo=UTC)  # a Friday: no weekly tick

    def materialize(partitions: list[str]) -> None:
        for day in partitions:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(key(declared.features_asset), partition=day)
            )

    materialize(["2013-01-01", *days[:-1]])  # one short (and a day outside the window)
    short = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, evaluation_time=when
    )
    assert _requested(short) == set()
    materialize(days[-1:])
    enough = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, evaluation_time=when,
        cursor=short.cursor,
    )  # fmt: skip
    assert _requested(enough) == {key("training_set")}


def test_a_registration_a_run_still_targets_is_not_requested_again(
    instance: dg.DagsterInstance,
) -> None:
    """The model job launched from the UI evaluates and registers in one run: a tick that began
    before that run ended (it reads the event log as of its start, run statuses live) must not
    request ``registered_model`` again, which would register the same model twice."""
    registered, evaluation = key("registered_model"), key("model_evaluation")
    selection = dg.AssetSelection.assets(registered)
    for name in ("trained_model", "model_evaluation", "registered_model"):
        instance.report_runless_asset_event(dg.AssetMaterialization(key(name)))
    first = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection
    )
    run = instance.create_run_for_job(
        defs.resolve_job_def("flights_model"),
        asset_selection=frozenset({evaluation, registered}),
        status=dg.DagsterRunStatus.STARTED,
    )
    instance.report_runless_asset_event(dg.AssetMaterialization(evaluation))
    for check in ("beats_baseline", "not_worse_than_champion"):
        passed = dg.AssetCheckEvaluation(asset_key=evaluation, check_name=check, passed=True)
        instance.report_runless_asset_event(passed)
    began = datetime.now(UTC)
    instance.report_run_canceled(run)

    during = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=first.cursor,
        evaluation_time=began,
    )  # fmt: skip
    assert _requested(during) == set()
    after = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=first.cursor
    )
    assert _requested(after) == {registered}  # an update no run of its own made is followed
