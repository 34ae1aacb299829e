"""The ml-assets platform.

Deliberate uses of Dagster's beta and preview surface (per-partition asset checks, single-run
backfill policies, history mappings that reach before the first partition, code references to
a pipeline's own functions) are acknowledged
here, once, for every entry point that imports the platform: the code location, the CLI, step
processes, benchmarks and tests.
"""

import warnings

ACKNOWLEDGED_WARNINGS = (
    r".*partitions_def on an AssetCheckSpec.*",
    r".*`backfill_policy`.*",
    r".*`allow_nonexistent_upstream_partitions`.*",
    r".*`include_sources`.*",  # inside dg.evaluate_automation_conditions
    r".*`use_user_code_server`.*",
    r".*`LocalFileCodeReference` is currently in beta.*",
    r".*`CodeReferencesMetadataValue` is currently in beta.*",
)
"""Messages (regular expressions) of the warnings the platform has acknowledged."""

for _message in ACKNOWLEDGED_WARNINGS:
    warnings.filterwarnings("ignore", message=_message)
