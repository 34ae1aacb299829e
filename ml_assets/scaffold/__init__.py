"""``ml-assets new-pipeline NAME``: a runnable skeleton of a new pipeline.

The skeleton is a working pipeline on a small sample it writes (a daily regression on
synthetic events), with every file a real pipeline has: the declaration, a publisher, cleaning
rules, schemas, features, the serving hooks, the definitions and a test that materializes it
end to end. A user replaces the sample and the rules with their own; nothing is forked.
"""

import re
import string
from pathlib import Path

from ml_assets.home import PROJECT_ROOT
from ml_assets.pipelines import PIPELINES_DIR, names

TEMPLATES = Path(__file__).with_name("templates")
SAMPLE_DAYS, ROWS_PER_DAY = 42, 60
FIRST_DAY = "2024-01-01"


def _files(name: str) -> dict[Path, str]:
    """Template file name → where it goes."""
    package = PIPELINES_DIR / name
    placed = {
        template.name.removesuffix(".tmpl"): package / template.name.removesuffix(".tmpl")
        for template in TEMPLATES.glob("*.tmpl")
    }
    placed["test_pipeline.py"] = PROJECT_ROOT / "tests" / f"test_{name}_pipeline.py"
    return {TEMPLATES / f"{source}.tmpl": target for source, target in placed.items()}


def sample_csv(seed: int = 0) -> str:
    """A small, deterministic sample export: events whose ``value`` depends on their segment,
    size and hour, plus noise, one block of rows per day."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    days = pd.date_range(FIRST_DAY, periods=SAMPLE_DAYS, freq="D").strftime("%Y-%m-%d")
    rows = SAMPLE_DAYS * ROWS_PER_DAY
    frame = pd.DataFrame(
        {
            "event_id": [f"e{i:06d}" for i in range(rows)],
            "day": np.repeat(days, ROWS_PER_DAY),
            "segment": rng.choice(["retail", "wholesale", "online"], rows),
            "size": rng.gamma(2.0, 5.0, rows).round(2),
            "hour": rng.integers(0, 24, rows),
        }
    )
    effect = frame["segment"].map({"retail": 0.0, "wholesale": 25.0, "online": -10.0})
    frame["value"] = (
        3.0 * frame["size"] + effect + 8.0 * np.sin(frame["hour"] / 24 * 2 * np.pi)
        + rng.normal(0, 4, rows)
    ).round(2)  # fmt: skip
    return frame.to_csv(index=False, lineterminator="\n")


def write_pipeline(name: str, force: bool = False) -> list[Path]:
    """Write the skeleton of pipeline ``name``; returns the files written."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"{name!r}: a pipeline name is lower case letters, digits and _")
    if name in names() and not force:
        raise FileExistsError(f"pipeline {name!r} exists; pass --force to overwrite it")
    values = {"name": name, "Name": name.title().replace("_", ""), "first_day": FIRST_DAY}
    written = []
    for template, target in _files(name).items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(string.Template(template.read_text()).substitute(values))
        written.append(target)
    sample = PIPELINES_DIR / name / "sample.csv"
    sample.write_text(sample_csv())
    return [*written, sample]
