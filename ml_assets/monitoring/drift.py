"""Population stability of features: each feature's distribution in a partition against the
training set's, as the population stability index (PSI).

A numeric feature is cut at the training set's quantiles (``bins`` bins of about equal
training share); a categorical one has a bin per training category (the most frequent
``MAX_CATEGORIES``), one for the categories training never saw and one for missing values.
``PSI = Σ (actual - expected) · ln(actual / expected)`` over the bins, shares floored at
``FLOOR`` so an empty bin counts as very rare rather than infinitely so. By the usual reading,
under 0.1 is stable, 0.1 to 0.25 a small shift, over 0.25 a large one.
"""

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

FLOOR = 1e-4
MAX_CATEGORIES = 50
MISSING, OTHER = "(missing)", "(other)"


@dataclass(frozen=True)
class Reference:
    """A feature's bins and their shares in the training set."""

    feature: str
    categorical: bool
    edges: np.ndarray
    """Numeric: the inner cut points (``searchsorted`` bins); categorical: empty."""
    categories: tuple[str, ...]
    shares: np.ndarray
    """Training share of each bin: numeric bins then missing; categories, other, missing."""

    def labels(self) -> list[str]:
        if self.categorical:
            return [*self.categories, OTHER, MISSING]
        bounds = ["-inf", *(f"{e:.4g}" for e in self.edges), "inf"]
        return [f"[{a}, {b})" for a, b in itertools.pairwise(bounds)] + [MISSING]

    def counts(self, values: pd.Series) -> np.ndarray:
        """How many of ``values`` fall in each bin."""
        missing = values.isna().to_numpy()
        if self.categorical:
            present = values[~missing].astype(str)
            bins = pd.Categorical(present, categories=list(self.categories)).codes.astype(int)
            other = len(self.categories)
            bins[bins < 0] = other  # a category training never saw
            size = other + 2
        else:
            present = values[~missing].to_numpy(dtype="float64")
            bins = np.searchsorted(self.edges, present, side="right")
            size = len(self.edges) + 2
        counts = np.bincount(bins, minlength=size).astype("float64")
        counts[-1] = float(missing.sum())
        return counts

    def shares_of(self, values: pd.Series) -> np.ndarray:
        counts = self.counts(values)
        total = counts.sum()
        return counts / total if total else counts


def reference(values: pd.Series, feature: str, categorical: bool, bins: int) -> Reference:
    """The bins of ``feature`` and their shares in the training ``values``."""
    if categorical:
        present = values.dropna().astype(str)
        categories = tuple(present.value_counts().index[:MAX_CATEGORIES])
        ref = Reference(feature, True, np.zeros(0), categories, np.zeros(0))
    else:
        present = values.dropna().to_numpy(dtype="float64")
        quantiles = np.linspace(0, 1, bins + 1)[1:-1]
        edges = np.unique(np.quantile(present, quantiles)) if len(present) else np.zeros(0)
        ref = Reference(feature, False, edges, (), np.zeros(0))
    return Reference(ref.feature, categorical, ref.edges, ref.categories, ref.shares_of(values))


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index of ``actual`` bin shares against ``expected``."""
    e, a = np.maximum(expected, FLOOR), np.maximum(actual, FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def references(
    training: pd.DataFrame, categorical: Sequence[str], numeric: Sequence[str], bins: int
) -> list[Reference]:
    return [
        *(reference(training[c], c, True, bins) for c in categorical),
        *(reference(training[c], c, False, bins) for c in numeric),
    ]


def drift_table(refs: Sequence[Reference], frame: pd.DataFrame) -> pd.DataFrame:
    """One row per feature: its PSI, missing shares and the bin that moved most."""
    rows = []
    for ref in refs:
        actual = ref.shares_of(frame[ref.feature])
        moved = int(np.argmax(np.abs(actual - ref.shares))) if len(actual) else 0
        rows.append(
            {
                "feature": ref.feature,
                "kind": "categorical" if ref.categorical else "numeric",
                "psi": psi(ref.shares, actual) if len(frame) else 0.0,
                "training_missing": float(ref.shares[-1]),
                "missing": float(actual[-1]) if len(frame) else 0.0,
                "moved_bin": ref.labels()[moved],
                "training_share": float(ref.shares[moved]),
                "share": float(actual[moved]) if len(frame) else 0.0,
            }
        )
    columns = ["feature", "kind", "psi", "training_missing", "missing", "moved_bin",
               "training_share", "share"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns).sort_values(
        "psi", ascending=False, ignore_index=True
    )
