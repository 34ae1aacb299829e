"""Ingest by source kind: one module per kind (``files``, ``sql``), each with
``asset(declaration, source, schema)`` building the asset that reads a source of that kind
into its raw partitions, or its reference table. The source's declared ``kind`` picks the
module; a new kind is its declaration model (``ml_assets.contract.declaration``) plus a module
here."""

import importlib

import dagster as dg
import pandera.pandas as pa

from ml_assets.contract.declaration import FilesSource, PipelineDeclaration, SqlSource


def ingest_asset(
    declaration: PipelineDeclaration, source: FilesSource | SqlSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    """The asset reading ``source``, built by its kind's module."""
    return importlib.import_module(f"{__name__}.{source.kind}").asset(declaration, source, schema)
