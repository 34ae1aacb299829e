"""A declaration in Dagster's terms: asset keys, partitions definitions and launchpad run config.

The declaration itself is plain pydantic, so that the prediction services read it without
Dagster; the platform's asset code translates it here (the services never import this).
"""

import functools
import types
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, create_model

from ml_assets.contract.declaration import Partitions, PipelineDeclaration

S = TypeVar("S", bound=BaseModel)


def asset_key(declaration: PipelineDeclaration, name: str) -> dg.AssetKey:
    """The key of the pipeline's asset ``name``."""
    return dg.AssetKey(declaration.asset_path(name))


def partitions_definition(partitions: Partitions) -> dg.TimeWindowPartitionsDefinition:
    """The declared partitions as Dagster's time-window partitions."""
    cls = {"daily": dg.DailyPartitionsDefinition, "monthly": dg.MonthlyPartitionsDefinition}
    return cls[partitions.kind](
        start_date=partitions.start.isoformat(),
        end_date=partitions.end.isoformat(),
        timezone=partitions.timezone,
    )


class SectionConfig(dg.Config):
    """Launchpad config of a declared section: its fields, with their bounds and descriptions."""

    model_config = ConfigDict(extra="forbid")


def run_config(declared: BaseModel, name: str) -> type[SectionConfig]:
    """A launchpad config class ``name`` with the fields of ``declared``'s section, whose
    defaults are the declared values.

    An asset taking it shows the declared values in the launchpad; a person overrides any field
    for one run, and the asset turns its config into the section (``declared_section``): one
    validated object, no hand merging.
    """
    section = type(declared)
    values = {field: _plain(getattr(declared, field)) for field in section.model_fields}
    return _config_class(section, name, values)


def declared_section(config: SectionConfig, section: type[S]) -> S:
    """``section`` with the values of ``config`` (a ``run_config`` class's), validated as the
    declaration validates it."""
    return section.model_validate(config.model_dump())


@functools.cache
def _nested_config(section: type[BaseModel]) -> type[SectionConfig]:
    """A section inside a section as config, with its own defaults (one class per section)."""
    return _config_class(section, f"{section.__name__}Config", {})


def _config_class(
    section: type[BaseModel], name: str, values: Mapping[str, Any]
) -> type[SectionConfig]:
    fields = {
        field: (
            # the annotation with its bounds (ge, le, ...), a nested section as config
            Annotated[_as_config(info.annotation), *info.metadata]
            if info.metadata
            else _as_config(info.annotation),
            Field(
                default=values.get(field, info.default),
                description=info.description,
                validate_default=True,  # a nested section's dict becomes its class again
            ),
        )
        for field, info in section.model_fields.items()
    }
    return create_model(name, __base__=SectionConfig, __doc__=section.__doc__, **fields)


def _as_config(annotation: Any) -> Any:
    """``annotation`` with every declared section in it turned into its config class."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _nested_config(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return Union[tuple(_as_config(arg) for arg in get_args(annotation))]  # noqa: UP007
    return annotation


def _plain(value: Any) -> Any:
    """A declared value as a config default: a nested section as its dict (Dagster's defaults
    are plain config values)."""
    return value.model_dump() if isinstance(value, BaseModel) else value
