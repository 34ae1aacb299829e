"""Plots as PNG files for MLflow and as inline images for Dagster metadata."""

import base64
from pathlib import Path

import dagster as dg


def save_figure(figure, path: Path) -> Path:
    """Write a matplotlib figure as a PNG and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=80)
    plt.close(figure)
    return path


def markdown_image(path: Path, title: str) -> dg.MetadataValue:
    """The PNG at ``path`` as Markdown the Dagster UI renders inline."""
    encoded = base64.b64encode(path.read_bytes()).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def new_figure(width: float = 6, height: float = 4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))
