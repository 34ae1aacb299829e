"""Dagster definition metadata: table schemas derived from Pandera schemas, and links to the
pipeline code behind an asset a platform factory built."""

import inspect
from collections.abc import Callable

import dagster as dg
import pandera.pandas as pa


def column_schema(schema: pa.DataFrameSchema) -> dg.TableSchema:
    """The schema's columns, types and descriptions as a Dagster ``TableSchema``."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=str(column.dtype),
                description=column.description,
                constraints=dg.TableColumnConstraints(
                    nullable=column.nullable,
                    unique=column.unique,
                    other=[str(check) for check in column.checks],
                ),
            )
            for name, column in schema.columns.items()
        ]
    )


def table_definition_metadata(schema: pa.DataFrameSchema) -> dict[str, dg.TableSchema]:
    return {"dagster/column_schema": column_schema(schema)}


def code_reference(function: Callable) -> dict[str, dg.CodeReferencesMetadataValue]:
    """``dagster/code_references`` pointing at ``function``, the pipeline's own code behind an
    asset that a platform factory builds: the UI links the asset to it, not to the factory."""
    function = inspect.unwrap(function)
    _, line = inspect.getsourcelines(function)
    reference = dg.LocalFileCodeReference(
        file_path=inspect.getsourcefile(function) or "",
        line_number=line,
        label=f"{function.__module__}.{function.__qualname__}",
    )
    return {"dagster/code_references": dg.CodeReferencesMetadataValue(code_references=[reference])}
