"""Plots as PNG files for MLflow and as inline images for Dagster metadata, and the evaluation
plots of a binary classifier's positive-class probabilities (matplotlib figures)."""

import base64
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import numpy as np


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


def roc_figure(y: Sequence, p: Sequence):
    """The ROC curve of positive-class probabilities ``p`` against labels ``y``."""
    from sklearn.metrics import RocCurveDisplay

    figure, axes = new_figure(5, 5)
    RocCurveDisplay.from_predictions(y, p, ax=axes, plot_chance_level=True)
    axes.set(title="ROC curve")
    return figure


def precision_recall_figure(y: Sequence, p: Sequence):
    """Precision against recall over all thresholds, with the positive rate as chance level."""
    from sklearn.metrics import PrecisionRecallDisplay

    figure, axes = new_figure(5, 5)
    PrecisionRecallDisplay.from_predictions(y, p, ax=axes, plot_chance_level=True)
    axes.set(title="Precision-recall curve")
    return figure


def reliability_figure(y: Sequence, p: Sequence, bins: int = 10):
    """The observed positive rate against the mean predicted probability in ``bins`` equal-width
    probability bins: a calibrated model lies on the diagonal."""
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(y, p, n_bins=bins)
    figure, axes = new_figure(5, 5)
    axes.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--", label="calibrated")
    axes.plot(predicted, observed, marker="o", label="model")
    axes.set(
        xlabel="mean predicted probability",
        ylabel="observed positive rate",
        xlim=(0, 1),
        ylim=(0, 1),
        title="Reliability",
    )
    axes.legend(loc="upper left")
    return figure


def confusion_figure(y: Sequence, p: Sequence, threshold: float):
    """Counts of actual against decided class, deciding positive when ``p >= threshold``."""
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axes = new_figure(5, 4)
    decided = np.asarray(p) >= threshold
    ConfusionMatrixDisplay.from_predictions(
        y, decided.astype(int), labels=[0, 1], ax=axes, colorbar=False
    )
    axes.set(title=f"Confusion matrix at threshold {threshold:.3g}")
    return figure
