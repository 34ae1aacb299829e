"""The platform's automation conditions, in one place: data layers, model layer, deploys."""

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
from dagster._core.definitions.declarative_automation.automation_context import AutomationContext
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START


def refresh_stale_partitions(
    may_be_missing: Sequence[dg.AssetKey] = (), history_by_sensor: bool = False
) -> dg.AutomationCondition:
    """Materialize each partition that is missing or whose upstream or code changed, once it can.

    ``AutomationCondition.eager()`` only looks at the latest time partition and only at data
    that arrives after it is switched on; historical data (a year of history) lands into every
    partition, at any time, so this condition looks at all of them:

    - a missing partition is requested once its inputs exist, unless its last run failed (a
      failure waits for a person or for new upstream data, instead of retrying every tick);
    - a partition is requested again when an input partition it reads (itself or as history)
      is rewritten after it (``ReadsRewrittenInputs``), or when its code_version changes; with
      ``history_by_sensor`` (the data layers), a partition stale only through its history is
      left to the history-refresh sensor, which requests it sooner;
    - never while the partition or an input is in progress, while a run that is not finished
      targets the partition (``TargetedByUnfinishedRun``), while an input is missing (except
      those in ``may_be_missing``: inputs that exist only for some partitions), or while a
      blocking check of any input partition it reads (the day and its history) has not passed.
    """
    condition = dg.AutomationCondition
    deps_missing = condition.any_deps_missing()
    if may_be_missing:
        deps_missing = deps_missing.ignore(dg.AssetSelection.assets(*may_be_missing))
    rewritten = ReadsRewrittenInputs(history=not history_by_sensor)
    inputs_rewritten = (
        condition.any_deps_match(condition.newly_updated()) & rewritten
    ).since_last_handled() & rewritten
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
    """True for the partitions that read an input partition written after them (or are
    missing); without ``history``, only those that read it as their own (``StaleReads.own``).

    Dagster's ``any_deps_updated()`` drops an update whenever the run that wrote it also
    targeted the reading asset, in *any* partition (``executed_with_root_target``): a run that
    rewrote a corrected day and that day's features hid the change from the next days' features,
    which read the day as history. This compares what was written instead (``stale_reads``);
    partitions the same run rewrote after their inputs are not stale, so nothing is run twice.
    The data layers leave the partitions stale only through their history to the history-refresh
    sensor (``sensors/history_refresh.py``), which requests them as one range run as soon as the
    rewrite ends, where automation would go through a backfill and its daemon's 30-s loop.
    """

    def __init__(self, history: bool = True) -> None:
        self.history = history

    @property
    def name(self) -> str:
        return "reads_rewritten_inputs" + ("" if self.history else "(own)")

    def evaluate(self, context: AutomationContext) -> dg.AutomationResult:
        view, key, partitions_def = context.asset_graph_view, context.key, context.partitions_def
        candidates = context.candidate_subset
        if candidates.is_empty:
            return dg.AutomationResult(context, candidates)
        if partitions_def is None:
            parents = view.asset_graph.get(key).parent_keys
            written = latest_storage_ids(view.instance, view.asset_graph, key).get(None, -1)
            newer = any(
                i > written
                for parent in parents
                for i in latest_storage_ids(view.instance, view.asset_graph, parent).values()
            )
            return dg.AutomationResult(context, candidates if newer else context.get_empty_subset())
        stale = stale_reads(
            view.instance, view.asset_graph, key, candidates.expensively_compute_partition_keys()
        )
        found = stale.own | stale.history if self.history else stale.own
        subset = view.get_subset_from_partition_keys(key, partitions_def, set(found))
        return dg.AutomationResult(context, candidates.compute_intersection(subset))


@dataclass(frozen=True)
class StaleReads:
    """The partitions of a partitioned asset that read an input partition written after them."""

    own: frozenset[str]
    """Missing ones, and those with a newer input they read as their own: their own partition of
    an input partitioned as they are, or any partition of an input partitioned otherwise (or not
    at all). Automation refreshes them."""
    history: frozenset[str]
    """Those whose only newer inputs are partitions they read as history (other partitions of an
    input partitioned as they are), with the newest storage id among those: the history-refresh
    sensor refreshes them."""
    newest_read: int = -1
    """The newest storage id among the history inputs of ``history``."""


def stale_reads(
    instance: dg.DagsterInstance, asset_graph: Any, key: dg.AssetKey, partitions: Iterable[str]
) -> StaleReads:
    """Which of ``partitions`` of ``key`` read an input partition (through the asset's partition
    mapping: the partition and its history) written after their own latest materialization."""
    node = asset_graph.get(key)
    partitions_def = node.partitions_def
    own_ids = latest_storage_ids(instance, asset_graph, key)
    inputs = {
        parent: latest_storage_ids(instance, asset_graph, parent) for parent in node.parent_keys
    }
    newest_input = {parent: max(ids.values(), default=-1) for parent, ids in inputs.items()}
    own: set[str] = set()
    history: set[str] = set()
    newest = -1
    for partition in partitions:
        written = own_ids.get(partition)
        if written is None:  # missing: whatever its inputs hold is new to it
            own.add(partition)
            continue
        through_history = -1
        for parent, ids in inputs.items():
            if newest_input[parent] <= written:
                continue
            newer = {
                k
                for k in read_partitions(asset_graph, key, parent, partition)
                if ids.get(k, -1) > written
            }
            same = asset_graph.get(parent).partitions_def == partitions_def
            if newer and (not same or partition in newer):
                own.add(partition)
                break
            if newer:
                through_history = max(through_history, *(ids[k] for k in newer))
        else:
            if through_history >= 0:
                history.add(partition)
                newest = max(newest, through_history)
    return StaleReads(frozenset(own), frozenset(history), newest)


def read_partitions(
    asset_graph: Any, key: dg.AssetKey, parent: dg.AssetKey, partition: str
) -> list[str | None]:
    """The partitions of ``parent`` that ``partition`` of ``key`` reads (``[None]``: all of an
    unpartitioned parent)."""
    parent_def = asset_graph.get(parent).partitions_def
    if parent_def is None:
        return [None]
    partitions_def = asset_graph.get(key).partitions_def
    result = asset_graph.get_partition_mapping(
        key, parent
    ).get_upstream_mapped_partitions_result_for_partitions(
        partitions_def.subset_with_partition_keys([partition]), partitions_def, parent_def
    )
    return list(result.partitions_subset.get_partition_keys())


def latest_storage_ids(
    instance: dg.DagsterInstance, asset_graph: Any, key: dg.AssetKey
) -> dict[str | None, int]:
    """The storage id of each partition's latest materialization (``None``: unpartitioned)."""
    if asset_graph.get(key).partitions_def is None:
        record = next(iter(instance.get_asset_records([key])), None)
        storage_id = record.asset_entry.last_materialization_storage_id if record else None
        return {} if storage_id is None else {None: storage_id}
    return dict(
        instance.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION)
    )


class TargetedByUnfinishedRun(dg.AutomationCondition):
    """True for the partitions that a queued or running run targets, written yet or not
    (``UnfinishedWork``).

    ``AutomationCondition.in_progress()`` turns false for a partition as soon as its run has
    written it, while that run goes on writing the others. A tick that reads a long range run's
    partitions as missing and, a moment later, as no longer in progress (a year's range run
    writes hundreds while one tick evaluates) would request them a second time; the run's own
    partition tags say what it targets until it ends. A run that ended after the tick began
    still counts: the tick reads the event log as of its start, where that run's last
    partitions are still missing, while run statuses are read live. Unpartitioned assets too: a
    model job launched from the UI that ended while a tick evaluated had its
    ``registered_model`` requested again (the same model registered twice).
    """

    @property
    def name(self) -> str:
        return "targeted_by_unfinished_run"

    def evaluate(self, context: AutomationContext) -> dg.AutomationResult:
        view, key, partitions_def = context.asset_graph_view, context.key, context.partitions_def
        targeted = _unfinished_work(view).targeted(key, partitions_def)
        if None in targeted:
            return dg.AutomationResult(context, context.candidate_subset)
        if partitions_def is None or not targeted:
            return dg.AutomationResult(context, context.get_empty_subset())
        subset = view.get_subset_from_partition_keys(key, partitions_def, targeted)
        return dg.AutomationResult(context, context.candidate_subset.compute_intersection(subset))


@dataclass(frozen=True)
class UnfinishedWork:
    """The queued and running runs, the runs that ended after a tick began, and the backfills in
    progress: what still targets partitions. Read once per tick (``read``) and asked for every
    asset the tick evaluates (``targeted``): three queries a tick instead of three an asset
    (a fifth of an automation tick's CPU went to them)."""

    instance: dg.DagsterInstance
    runs: Sequence[Any]
    backfills: Sequence[Any]
    planned: dict[str, set[dg.AssetKey]] = field(default_factory=dict)
    """The assets each run without an asset selection planned, as they are asked for."""

    @classmethod
    def read(cls, instance: dg.DagsterInstance, ended_after: datetime) -> "UnfinishedWork":
        from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
        from dagster._core.storage.dagster_run import FINISHED_STATUSES, NOT_FINISHED_STATUSES

        unfinished = instance.get_runs(filters=dg.RunsFilter(statuses=NOT_FINISHED_STATUSES))
        ended = instance.get_runs(
            filters=dg.RunsFilter(statuses=FINISHED_STATUSES, updated_after=ended_after)
        )
        backfills = instance.get_backfills(
            filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])
        )
        return cls(instance, [*unfinished, *ended], backfills)

    def targeted(
        self, key: dg.AssetKey, partitions_def: dg.PartitionsDefinition | None
    ) -> set[str | None]:
        """The partitions of ``key`` this work targets (``None``: the asset as a whole). A run
        without an asset selection (a whole asset job, as the UI launches one) targets the
        assets it planned; an op job plans none. A backfill targets what it has not
        materialized yet."""
        targeted: set[str | None] = set()
        for run in self.runs:
            if key not in (run.asset_selection or self._planned(run.run_id)):
                continue
            first, last = run.tags.get(RANGE_START), run.tags.get(RANGE_END)
            partition = run.tags.get("dagster/partition")
            if partitions_def is None:
                targeted.add(None)
            elif first and last:
                window = dg.PartitionKeyRange(first, last)
                targeted.update(partitions_def.get_partition_keys_in_range(window))
            elif partition:
                targeted.add(partition)
        for backfill in self.backfills:
            data = backfill.asset_backfill_data
            if data is None or key not in data.target_subset.asset_keys:
                continue
            left = data.target_subset - data.materialized_subset
            if key in left.non_partitioned_asset_keys:
                targeted.add(None)
            elif key in left.partitions_subsets_by_asset_key:
                targeted.update(left.get_partitions_subset(key).get_partition_keys())
        return targeted

    def _planned(self, run_id: str) -> set[dg.AssetKey]:
        if run_id not in self.planned:
            records = self.instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=10_000
            ).records
            events = (record.event_log_entry.dagster_event for record in records)
            self.planned[run_id] = {
                event.asset_key for event in events if event is not None and event.asset_key
            }
        return self.planned[run_id]


_TICKS: "weakref.WeakKeyDictionary[AssetGraphView, UnfinishedWork]" = weakref.WeakKeyDictionary()


def _unfinished_work(view: AssetGraphView) -> UnfinishedWork:
    """The tick's ``UnfinishedWork``: one asset graph view is one tick's evaluation of every
    asset, as of its ``effective_dt``."""
    if view not in _TICKS:
        _TICKS[view] = UnfinishedWork.read(view.instance, view.effective_dt)
    return _TICKS[view]


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
