"""Automation conditions shared by the partitioned layers."""

import dagster as dg


def refresh_stale_partitions() -> dg.AutomationCondition:
    """Materialize each partition that is missing or whose upstream changed, once it can.

    ``AutomationCondition.eager()`` only looks at the latest time partition; historical data
    (a year of flights) lands into every partition, so this condition looks at all of them. It
    also waits for upstream partitions to exist, to finish running, and to pass their blocking
    checks, and treats a new ``code_version`` as a reason to recompute.
    """
    return (
        (
            dg.AutomationCondition.newly_missing()
            | dg.AutomationCondition.any_deps_updated()
            | dg.AutomationCondition.code_version_changed()
        ).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("refresh_stale_partitions")
