"""What every declaration model shares: strictness, names, and the check for repeated names."""

from pydantic import BaseModel, ConfigDict

NAME = r"^[a-z][a-z0-9_]*$"
"""An asset, source or pipeline name."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def unique(names: list[str], what: str) -> None:
    """Raise naming the names that ``names`` repeats."""
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{what} named more than once: {', '.join(repeated)}")
