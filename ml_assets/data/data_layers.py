"""What every data-layer asset of a pipeline shares: its layer's group, its partitions and
checks evaluated per partition, and the window of earlier partitions an input reads.

Partitioned assets handle every partition key of their run (one partition, or a year in a
single-run backfill) one partition at a time: they read a range input as a lazy mapping
(``PartitionFrames``) and return a ``PartitionStream`` that produces each partition while the
IO manager writes it, checking it on the way; the check evaluations, one per partition, follow
the output. Memory does not grow with the range.
"""

import dagster as dg

from ml_assets.automation import refresh_stale_partitions
from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration

INGEST, CLEAN, FEATURES = "ingest", "clean", "features"


def group(declaration: PipelineDeclaration, layer: str) -> str:
    """The asset group of ``layer`` in ``declaration``'s pipeline (``<prefix>_<layer>``)."""
    return f"{declaration.prefix}_{layer}"


def partitioned(declaration: PipelineDeclaration) -> dict:
    """What every partitioned asset of the pipeline declares: its partitions, single-run
    backfills."""
    return {
        "partitions_def": partitions_definition(declaration.partitions),
        "backfill_policy": dg.BackfillPolicy.single_run(),
    }


def partition_check(
    declaration: PipelineDeclaration,
    asset: str,
    name: str,
    description: str,
    blocking: bool = True,
) -> dg.AssetCheckSpec:
    """A check of ``asset`` evaluated per partition."""
    return dg.AssetCheckSpec(
        name,
        asset=asset_key(declaration, asset),
        description=description,
        blocking=blocking,
        partitions_def=partitions_definition(declaration.partitions),
    )


def history_mapping(partitions: int, own: bool = True) -> dg.TimeWindowPartitionMapping:
    """An input read with the ``partitions`` partitions before each partition, and the
    partition itself unless ``own`` is false."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-partitions,
        end_offset=0 if own else -1,
        allow_nonexistent_upstream_partitions=True,
    )


def layer_automation() -> dg.AutomationCondition:
    """The automation of a data-layer asset: ``refresh_stale_partitions``, leaving the partitions
    stale only through their history to the history-refresh sensor."""
    return refresh_stale_partitions(history_by_sensor=True)
