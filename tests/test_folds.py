"""Rolling cross-validation folds: never the future, each window its horizon after its
gap, the last window ending with the data."""

import hypothesis.strategies as st
import pandas as pd
import pytest
from hypothesis import given

from ml_assets.modeling.folds import fold_columns, rolling_folds, windows

pytestmark = pytest.mark.unit


@given(
    folds=st.integers(2, 6),
    horizon=st.integers(1, 5),
    gap=st.integers(0, 3),
    train=st.integers(1, 6),
    extra=st.integers(0, 10),
    window=st.sampled_from(["expanding", "sliding"]),
)
def test_folds_never_see_their_window_nor_its_future(
    folds: int, horizon: int, gap: int, train: int, extra: int, window: str
) -> None:
    keys = [f"p{i:03d}" for i in range(train + gap + folds * horizon + extra)]

    made = rolling_folds(keys, folds, horizon, gap, window, train)  # type: ignore[arg-type]

    assert len(made) == folds
    assert made[-1].validation[-1] == keys[-1]
    for number, fold in enumerate(made):
        assert len(fold.validation) == horizon
        assert list(fold.validation) == sorted(fold.validation)
        first = keys.index(fold.validation[0])
        assert keys[first : first + horizon] == list(fold.validation)  # contiguous
        assert keys.index(fold.train[-1]) == first - gap - 1  # the gap, exactly
        assert max(fold.train) < min(fold.validation)  # never the future
        assert len(fold.train) >= train
        if window == "sliding":
            assert len(fold.train) == train
        else:
            assert fold.train[0] == keys[0]
        if number:
            assert keys.index(fold.validation[0]) == keys.index(made[number - 1].validation[-1]) + 1


def test_too_few_partitions_for_the_folds_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot hold 3 folds of 2 partitions"):
        rolling_folds([f"p{i}" for i in range(7)], 3, 2, gap=1, train_partitions=1)


def test_fold_columns_label_each_fold_and_the_study_scores_them() -> None:
    made = rolling_folds(["a", "b", "c", "d"], 2, 1, train_partitions=1)
    partition = pd.Series(["a", "a", "b", "c", "d"])

    labels = fold_columns(partition, made)

    assert labels.fillna("-").to_numpy().tolist() == [
        ["train", "train"], ["train", "train"], ["train", "train"], ["validation", "train"],
        ["-", "validation"],
    ]  # fmt: skip
    assert windows(labels) == ["fold_0", "fold_1"]
    assert windows(pd.DataFrame({"split": ["train"]})) == ["split"]
