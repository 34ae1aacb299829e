"""What every monitor asset of a pipeline shares: its group, code version and owners."""

import dagster as dg

from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.monitoring import MONITOR

CODE_VERSION = "1"


def common(declaration: PipelineDeclaration) -> dict:
    return {
        "group_name": f"{declaration.prefix}_{MONITOR}",
        "code_version": CODE_VERSION,
        "owners": declaration.owners,
    }


def window_mapping(partitions: int) -> dg.TimeWindowPartitionMapping:
    """A partition reads itself and the ``partitions - 1`` before it (as far as they exist)."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-(partitions - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
    )


MAY_BE_MISSING = {"allow_missing_partitions": True}
"""Input metadata: a partition of the window that is not stored is left out, not an error."""
