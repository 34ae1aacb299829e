"""Ingest by source kind: one module per kind (``files``, ``sql``, ``rest``, ``stream``), each
``asset(declaration, source, schema)`` building the asset that reads a source of that kind
into its raw partitions, or its reference table. The source's declared ``kind`` picks the
module; a new kind is its declaration model (``ml_assets.contract.declaration``) plus a module
here. What the kinds share is in ``ingest``; ``landed_assets`` builds a pipeline's every source."""

import importlib

import dagster as dg
import pandera.pandas as pa

from ml_assets.contract.declaration import PipelineDeclaration, SourceDeclaration


def ingest_asset(
    declaration: PipelineDeclaration, source: SourceDeclaration, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    """The asset reading ``source``, built by its kind's module."""
    return importlib.import_module(f"{__name__}.{source.kind}").asset(declaration, source, schema)


def landed_assets(
    declaration: PipelineDeclaration, schemas: dict[str, pa.DataFrameSchema]
) -> list[dg.AssetsDefinition]:
    """The raw asset of every partitioned source and the table of every unpartitioned one, each
    built by its kind's module; ``schemas`` gives each source's schema by source name."""
    return [
        ingest_asset(declaration, source, schemas[source.name]) for source in declaration.sources
    ]
