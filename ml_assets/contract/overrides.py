"""Launchpad configuration whose defaults are a pipeline's declared values."""

from typing import Annotated, Any, TypeVar

import dagster as dg
from pydantic import BaseModel, Field, create_model

C = TypeVar("C", bound=dg.Config)


def declared_defaults(declared: C, name: str) -> type[C]:
    """A subclass of ``declared``'s Config class whose defaults are the declared values.

    An asset taking it shows the declared values in the launchpad; a person overrides any
    field for one run, and the asset receives one validated object: no hand merging.
    """
    cls = type(declared)
    fields = {
        field_name: (
            # the annotation with its bounds (ge, le, ...)
            Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation,
            Field(
                default=_plain(getattr(declared, field_name)),
                description=info.description,
                validate_default=True,  # a nested section's dict becomes its class again
            ),
        )
        for field_name, info in cls.model_fields.items()
    }
    return create_model(name, __base__=cls, __doc__=cls.__doc__, **fields)


def _plain(value: Any) -> Any:
    """A declared value as a config default: a nested section as its dict (Dagster's defaults
    are plain config values)."""
    return value.model_dump() if isinstance(value, BaseModel) else value
