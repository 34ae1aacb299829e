"""The training set's split by time: train, then validation, then test, each after a gap."""

import hypothesis.strategies as st
import pandas as pd
import pytest
from hypothesis import given

from ml_assets.modeling.layer import PARTITION_COLUMN
from ml_assets.modeling.training_set import split_by_partition

pytestmark = pytest.mark.unit


@given(
    train=st.integers(1, 6),
    validation=st.integers(1, 4),
    test=st.integers(1, 4),
    gap=st.integers(0, 3),
    extra=st.integers(0, 3),
    rows=st.integers(1, 3),
)
def test_each_split_is_whole_partitions_in_time_order_after_its_gap(
    train: int, validation: int, test: int, gap: int, extra: int, rows: int
) -> None:
    count = train + extra + validation + test + 2 * gap
    keys = [f"2020-01-{d:02d}" for d in range(1, count + 1)]
    frame = pd.DataFrame({PARTITION_COLUMN: [k for k in keys for _ in range(rows)]})

    labels = split_by_partition(frame, validation, test, min_train=train, gap=gap)

    by_partition = labels.groupby(frame[PARTITION_COLUMN]).agg(set)
    assert all(len(labelled) == 1 for labelled in by_partition)  # whole partitions
    order = [next(iter(labelled)) for labelled in by_partition]
    expected = (
        ["train"] * (train + extra) + ["gap"] * gap + ["validation"] * validation
        + ["gap"] * gap + ["test"] * test
    )  # fmt: skip
    assert order == expected


def test_a_window_too_short_for_its_gaps_is_refused() -> None:
    frame = pd.DataFrame({PARTITION_COLUMN: ["a", "b", "c", "d"]})
    with pytest.raises(ValueError, match="with a gap of 1 before each"):
        split_by_partition(frame, 1, 1, min_train=1, gap=1)


@given(
    validation=st.integers(1, 5),
    test=st.integers(1, 5),
    gap=st.integers(0, 2),
    horizon=st.integers(1, 8),
)
def test_validation_and_test_must_lie_within_the_horizon(
    validation: int, test: int, gap: int, horizon: int
) -> None:
    keys = [f"2020-01-{d:02d}" for d in range(1, 4 + validation + test + 2 * gap)]
    frame = pd.DataFrame({PARTITION_COLUMN: keys})
    reaches = {"validation": gap + validation, "test": gap + test}
    beyond = [window for window, reach in reaches.items() if reach > horizon]

    if beyond:
        with pytest.raises(ValueError, match=f"{beyond[0]} reaches {reaches[beyond[0]]} part"):
            split_by_partition(frame, validation, test, 3, gap, horizon=horizon)
    else:
        within = split_by_partition(frame, validation, test, 3, gap, horizon=horizon)
        pd.testing.assert_series_equal(within, split_by_partition(frame, validation, test, 3, gap))


def test_a_horizon_in_days_counts_from_the_last_day_of_the_rows_before() -> None:
    months = pd.DataFrame({PARTITION_COLUMN: [f"2020-{m:02d}-01" for m in range(1, 13)]})

    # validation Jul-Sep reaches 92 days past Jun 30; test Oct-Dec 92 days past Sep 30
    split_by_partition(months, 3, 3, 1, horizon_days=92, kind="monthly")
    with pytest.raises(ValueError, match="validation reaches 92 days past train, beyond the "):
        split_by_partition(months, 3, 3, 1, horizon_days=91, kind="monthly")
