"""Generic means generic: outside ``ml_assets/pipelines/<name>/`` no code names a pipeline, its
sources, columns, model or units."""

import re
from pathlib import Path
from typing import get_args

import pytest

from ml_assets import pipelines
from ml_assets.contract.features import HOLIDAY, Calendar
from ml_assets.home import PROJECT_ROOT

pytestmark = pytest.mark.unit

GENERIC = ("ml_assets", "resources", "sensors", "jobs", "serving")
"""The platform's own packages; ``ml_assets/pipelines/<name>/`` is each pipeline's."""
PLATFORM_WORDS = {"year", "month", "day", "hour", "minute", "date", "local",
                  *get_args(Calendar), HOLIDAY}  # fmt: skip
"""Calendar words every time-partitioned platform speaks, "local" (disk, profile, time) and the
declared calendar features the platform computes and names: columns of the reference
pipelines, but not their vocabulary."""
UNITS = {"minutes", "miles", "mph", "delay", "delays", "flight", "flights", "taxi", "trip",
         "trips", "tip", "tips", "airport", "airports", "carrier", "weather"}  # fmt: skip
"""Units and domain words of the reference pipelines."""


def _vocabulary() -> set[str]:
    words = set(UNITS)
    for name in pipelines.names():
        declared = pipelines.declaration(name)
        model, serving = declared.model, declared.serving
        words |= {name, declared.prefix, model.registered_model_name, model.target,
                  model.id_column, model.features_asset, serving.prediction,
                  serving.requests_asset, *model.features, *serving.batch_columns,
                  *(f.name for f in serving.request_fields)}  # fmt: skip
        if serving.snapshot_asset:
            words.add(serving.snapshot_asset)
        for source in declared.sources:
            words |= {source.name, *source.columns}
    return {w.lower() for w in words} - PLATFORM_WORDS


def _generic_files() -> list[Path]:
    files = []
    for package in GENERIC:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            relative = path.relative_to(PROJECT_ROOT)
            if relative.parts[:2] == ("ml_assets", "pipelines") and len(relative.parts) > 3:
                continue  # a pipeline's own module
            files.append(path)
    return files


def test_the_vocabulary_is_the_declarations() -> None:
    """The words looked for include both pipelines' names, sources, targets and features."""
    vocabulary = _vocabulary()
    assert {"flights", "taxi", "arr_delay", "tip", "weather", "trips", "dest", "company"} <= (
        vocabulary
    )


@pytest.mark.parametrize("path", _generic_files(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_generic_code_names_no_pipeline(path: Path) -> None:
    vocabulary = _vocabulary()
    found = {
        (number, word)
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        for word in re.findall(r"[a-z][a-z0-9_]*", line.lower())
        if word in vocabulary
    }
    assert sorted(found) == [], f"{path.relative_to(PROJECT_ROOT)} names pipeline specifics"
