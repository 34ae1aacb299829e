"""Automation conditions shared by the partitioned layers."""

import dagster as dg


def refresh_stale_partitions() -> dg.AutomationCondition:
    """Materialize each partition that is missing or whose upstream or code changed, once it can.

    ``AutomationCondition.eager()`` only looks at the latest time partition and only at data
    that arrives after it is switched on; historical data (a year of history) lands into every
    partition, at any time, so this condition looks at all of them:

    - a missing partition is requested once its inputs exist, unless its last run failed (a
      failure waits for a person or for new upstream data, instead of retrying every tick);
    - a partition is requested again when an input partition is updated or its code_version
      changes;
    - never while the partition or an input is in progress, while an input is missing, or
      while a blocking check of any input partition it reads (the day and its history) has not
      passed.
    """
    condition = dg.AutomationCondition
    return (
        (
            (condition.missing() & ~condition.execution_failed())
            | (condition.any_deps_updated() | condition.code_version_changed()).since_last_handled()
        )
        & ~condition.any_deps_missing()
        & ~condition.any_deps_in_progress()
        & ~condition.in_progress()
        & all_read_partitions_passed_blocking_checks()
    ).with_label("refresh_stale_partitions")


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
