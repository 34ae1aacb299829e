"""Loading a declaration file, with errors that name the file, the key and the reason."""

from pathlib import Path

import yaml
from pydantic import ValidationError

from ml_assets.contract.declaration import SOURCE_KINDS, PipelineDeclaration

DECLARATION_FILE = "pipeline.yaml"


class DeclarationError(ValueError):
    """A pipeline declaration that does not hold; the message names file, key and reason."""


def _where(location: tuple) -> str:
    if location[:1] == ("sources",) and len(location) > 2 and location[2] in SOURCE_KINDS:
        location = location[:2] + location[3:]  # the kind a source declares is no key of its own
    return ".".join(str(part) for part in location) or "<top level>"


def format_errors(path: Path | str, error: ValidationError) -> str:
    lines = [f"{path}: invalid pipeline declaration"]
    for problem in error.errors(include_url=False):
        lines.append(f"  {_where(problem['loc'])}: {problem['msg']}")
    return "\n".join(lines)


def load_declaration(path: Path) -> PipelineDeclaration:
    """Read and validate the declaration at ``path``; ``DeclarationError`` if it is invalid."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise DeclarationError(f"{path}: cannot be read as YAML: {error}") from error
    if not isinstance(data, dict):
        raise DeclarationError(f"{path}: expected a mapping of keys at the top level")
    try:
        return PipelineDeclaration.model_validate(data)
    except ValidationError as error:
        raise DeclarationError(format_errors(path, error)) from None
