"""The platform's automation conditions, in one place: data layers, model layer, deploys."""

from collections.abc import Sequence

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
from dagster._core.definitions.declarative_automation.automation_context import AutomationContext
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START


def refresh_stale_partitions(
    may_be_missing: Sequence[dg.AssetKey] = (),
) -> dg.AutomationCondition:
    """Materialize each partition that is missing or whose upstream or code changed, once it can.

    ``AutomationCondition.eager()`` only looks at the latest time partition and only at data
    that arrives after it is switched on; historical data (a year of history) lands into every
    partition, at any time, so this condition looks at all of them:

    - a missing partition is requested once its inputs exist, unless its last run failed (a
      failure waits for a person or for new upstream data, instead of retrying every tick);
    - a partition is requested again when an input partition it reads (itself or as history)
      is rewritten after it (``ReadsRewrittenInputs``), or when its code_version changes;
    - never while the partition or an input is in progress, while a run that is not finished
      targets the partition (``TargetedByUnfinishedRun``), while an input is missing (except
      those in ``may_be_missing``: inputs that exist only for some partitions), or while a
      blocking check of any input partition it reads (the day and its history) has not passed.
    """
    condition = dg.AutomationCondition
    deps_missing = condition.any_deps_missing()
    if may_be_missing:
        deps_missing = deps_missing.ignore(dg.AssetSelection.assets(*may_be_missing))
    inputs_rewritten = (
        condition.any_deps_match(condition.newly_updated()) & ReadsRewrittenInputs()
    ).since_last_handled() & ReadsRewrittenInputs()
    return (
        (
            (condition.missing() & ~condition.execution_failed())
            | inputs_rewritten
            | condition.any_deps_match(condition.will_be_requested())
            | condition.code_version_changed().since_last_handled()
        )
        & ~deps_missing
        & ~condition.any_deps_in_progress()
        & ~condition.in_progress()
        & ~TargetedByUnfinishedRun()
        & all_read_partitions_passed_blocking_checks()
    ).with_label("refresh_stale_partitions")


class ReadsRewrittenInputs(dg.AutomationCondition):
    """True for the partitions that read an input partition written after them (or are missing).

    Dagster's ``any_deps_updated()`` drops an update whenever the run that wrote it also
    targeted the reading asset, in *any* partition (``executed_with_root_target``): a run that
    rewrote a corrected day and that day's features hid the change from the next days' features,
    which read the day as history. This compares what was written instead: a partition is stale
    when any partition it reads (through its partition mapping: the day and its history) has a
    newer materialization than its own. Partitions the same run rewrote after their inputs are
    not stale, so nothing is run twice.
    """

    @property
    def name(self) -> str:
        return "reads_rewritten_inputs"

    def evaluate(self, context: AutomationContext) -> dg.AutomationResult:
        view, key, partitions_def = context.asset_graph_view, context.key, context.partitions_def
        candidates = context.candidate_subset
        if candidates.is_empty:
            return dg.AutomationResult(context, candidates)
        parents = view.asset_graph.get(key).parent_keys
        latest = {parent: _latest_storage_ids(view, parent) for parent in parents}
        if partitions_def is None:
            written = _latest_storage_ids(view, key).get(None, -1)
            newer = any(i > written for ids in latest.values() for i in ids.values())
            return dg.AutomationResult(context, candidates if newer else context.get_empty_subset())

        own = _latest_storage_ids(view, key)
        stale = set()
        for partition in candidates.expensively_compute_partition_keys():
            written = own.get(partition)
            if written is None:  # missing: whatever its inputs hold is new to it
                stale.add(partition)
                continue
            single = view.get_subset_from_partition_keys(key, partitions_def, {partition})
            for parent, ids in latest.items():
                if not ids or max(ids.values()) <= written:
                    continue
                read = view.compute_parent_subset(parent, single)
                keys = read.expensively_compute_partition_keys() if read.is_partitioned else [None]
                if any(ids.get(k, -1) > written for k in keys):
                    stale.add(partition)
                    break
        subset = view.get_subset_from_partition_keys(key, partitions_def, stale)
        return dg.AutomationResult(context, candidates.compute_intersection(subset))


def _latest_storage_ids(view: AssetGraphView, key: dg.AssetKey) -> dict[str | None, int]:
    """The storage id of each partition's latest materialization (``None``: unpartitioned)."""
    if view.asset_graph.get(key).partitions_def is None:
        record = next(iter(view.instance.get_asset_records([key])), None)
        storage_id = record.asset_entry.last_materialization_storage_id if record else None
        return {} if storage_id is None else {None: storage_id}
    return dict(
        view.instance.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_MATERIALIZATION
        )
    )


class TargetedByUnfinishedRun(dg.AutomationCondition):
    """True for the partitions that a queued or running run targets, written yet or not.

    ``AutomationCondition.in_progress()`` turns false for a partition as soon as its run has
    written it, while that run goes on writing the others. A tick that reads a long range run's
    partitions as missing and, a moment later, as no longer in progress (a year's range run
    writes hundreds while one tick evaluates) would request them a second time; the run's own
    partition tags say what it targets until it ends. A run that ended after the tick began
    still counts: the tick reads the event log as of its start, where that run's last
    partitions are still missing, while run statuses are read live. A run without an asset
    selection (a whole asset job, as the UI launches one) targets the assets it planned; an op
    job plans none. Unpartitioned assets too: a model job launched from the UI that ended while
    a tick evaluated had its ``registered_model`` requested again (the same model registered
    twice).
    """

    @property
    def name(self) -> str:
        return "targeted_by_unfinished_run"

    def evaluate(self, context: AutomationContext) -> dg.AutomationResult:
        from dagster._core.storage.dagster_run import FINISHED_STATUSES, NOT_FINISHED_STATUSES

        view, key, partitions_def = context.asset_graph_view, context.key, context.partitions_def
        unfinished = view.instance.get_runs(filters=dg.RunsFilter(statuses=NOT_FINISHED_STATUSES))
        ended_during_tick = view.instance.get_runs(
            filters=dg.RunsFilter(statuses=FINISHED_STATUSES, updated_after=view.effective_dt)
        )
        targeted: set[str] = set()
        whole = False
        for run in [*unfinished, *ended_during_tick]:
            if key not in (run.asset_selection or _planned(view, run.run_id)):
                continue
            if partitions_def is None:
                whole = True
                break
            first, last = run.tags.get(RANGE_START), run.tags.get(RANGE_END)
            if first and last:
                window = dg.PartitionKeyRange(first, last)
                targeted.update(partitions_def.get_partition_keys_in_range(window))
            elif partition := run.tags.get("dagster/partition"):
                targeted.add(partition)
        if whole:
            return dg.AutomationResult(context, context.candidate_subset)
        if partitions_def is None or not targeted:
            return dg.AutomationResult(context, context.get_empty_subset())
        subset = view.get_subset_from_partition_keys(key, partitions_def, targeted)
        return dg.AutomationResult(context, context.candidate_subset.compute_intersection(subset))


def _planned(view: AssetGraphView, run_id: str) -> set[dg.AssetKey]:
    """The assets a run without an asset selection (a whole asset job, as the UI launches one)
    planned to materialize."""
    from dagster import DagsterEventType

    records = view.instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=10_000
    ).records
    events = (record.event_log_entry.dagster_event for record in records)
    return {event.asset_key for event in events if event is not None and event.asset_key}


def all_read_partitions_passed_blocking_checks() -> dg.AutomationCondition:
    """True when every upstream partition the target reads has passed its blocking checks.

    ``AutomationCondition.all_deps_blocking_checks_passed()`` is satisfied when *any* partition
    mapped from a dependency passed, so with a window mapping (a day and its trailing history) a
    failed check on the day itself does not block it. This asks the same question of every
    partition in the window. An upstream requested in the same tick counts as passed: if its
    check then fails within the run, the run stops the downstream step.
    """
    passed = dg.AutomationCondition.all_checks_match(
        dg.AutomationCondition.check_passed() | dg.AutomationCondition.will_be_requested(),
        blocking_only=True,
    )
    return (~dg.AutomationCondition.any_deps_match(~passed)).with_label(
        "all_read_partitions_passed_blocking_checks"
    )


class PartitionsMaterialized(dg.AutomationCondition):
    """True when ``upstream`` has at least ``minimum`` materialized partitions in
    [``first``, ``last``].

    No built-in condition counts an upstream's partitions; this one reads them from the
    instance, so the automation sensor evaluates it in the code server
    (``use_user_code_server=True``).
    """

    def __init__(self, upstream: dg.AssetKey, minimum: int, first: str, last: str) -> None:
        self.upstream, self.minimum, self.first, self.last = upstream, minimum, first, last

    @property
    def name(self) -> str:
        return f"partitions_materialized({self.upstream.to_user_string()} >= {self.minimum})"

    @property
    def description(self) -> str:
        return (
            f"{self.upstream.to_user_string()} has {self.minimum} materialized partitions in "
            f"{self.first}…{self.last}"
        )

    def evaluate(self, context: AutomationContext) -> dg.AutomationResult:
        instance = context.asset_graph_view.instance
        materialized = instance.get_materialized_partitions(self.upstream)
        count = sum(self.first <= key <= self.last for key in materialized)
        enough = count >= self.minimum
        return dg.AutomationResult(
            context, context.candidate_subset if enough else context.get_empty_subset()
        )


class CheckFailedSince(dg.AutomationCondition):
    """True when ``check`` has failed (on any partition) since the target was last
    materialized: how a degraded live model asks for retraining.

    A check of another asset is not a dependency, so no built-in condition reads it; this one
    reads the check's newest failed execution from the instance (in the code server)."""

    def __init__(self, check: dg.AssetCheckKey) -> None:
        self.check = check

    @property
    def name(self) -> str:
        return f"check_failed_since_materialized({self.check.to_user_string()})"

    def evaluate(self, context: AutomationContext) -> dg.AutomationResult:
        from dagster._core.storage.asset_check_execution_record import (
            AssetCheckExecutionRecordStatus,
        )

        instance = context.asset_graph_view.instance
        failed = instance.event_log_storage.get_asset_check_execution_history(
            self.check, limit=1, status={AssetCheckExecutionRecordStatus.FAILED}
        )
        latest = instance.get_latest_materialization_event(context.key)
        since = latest.timestamp if latest is not None else 0.0
        fired = bool(failed) and failed[0].create_timestamp > since
        return dg.AutomationResult(
            context, context.candidate_subset if fired else context.get_empty_subset()
        )


def retrain_on_schedule(
    cron: str,
    features: dg.AssetKey,
    minimum: int,
    window: tuple[str, str],
    degraded: dg.AssetCheckKey | None = None,
) -> dg.AutomationCondition:
    """Train once the training ``window`` first holds ``minimum`` feature partitions (a
    newcomer's first model, without waiting for the cron); then retrain when the cron ticks,
    the code changes or the live model's ``degraded`` check fails; never while the features
    are being written."""
    condition = dg.AutomationCondition
    first = (
        condition.missing()
        & ~condition.execution_failed()
        & PartitionsMaterialized(features, minimum, *window)
    ).with_label(f"first_training(>= {minimum} feature partitions)")
    scheduled = (
        condition.cron_tick_passed(cron) | condition.code_version_changed()
    ).since_last_handled()
    if degraded is not None:
        scheduled = scheduled | CheckFailedSince(degraded)
    return (
        (first | scheduled) & ~condition.in_progress() & ~condition.any_deps_in_progress()
    ).with_label(f"retrain_on_schedule({cron})")


def summarize_upstream() -> dg.AutomationCondition:
    """Run after any upstream partition updates (an unpartitioned summary of partitions, some
    of which may never exist)."""
    condition = dg.AutomationCondition
    return (
        (condition.any_deps_updated() | condition.code_version_changed()).since_last_handled()
        & ~condition.any_deps_in_progress()
        & ~condition.in_progress()
    ).with_label("summarize_upstream")


def follow_upstream() -> dg.AutomationCondition:
    """Run after an upstream model asset updates, once its blocking checks pass."""
    condition = dg.AutomationCondition
    return (
        (condition.any_deps_updated() | condition.code_version_changed()).since_last_handled()
        & ~condition.any_deps_missing()
        & ~condition.any_deps_in_progress()
        & ~condition.in_progress()
        & ~TargetedByUnfinishedRun()
        & condition.all_deps_blocking_checks_passed()
    ).with_label("follow_upstream")


def deploy_new_registrations() -> dg.AutomationCondition:
    """Deploy each newly registered model version once."""
    return dg.AutomationCondition.eager()
