"""Dagster table metadata derived from Pandera schemas."""

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
