"""Gapped CV on the shared calendar: gaps, purging, carve-out, clear errors."""

import numpy as np
import pytest

from keras_synapse.errors import ConfigError
from keras_synapse.windows.splitters import GappedTimeSeriesCV, carve_validation

CALENDAR = np.arange("2020-01-01", "2022-01-01", dtype="datetime64[D]").astype("datetime64[ns]")


@pytest.mark.parametrize("gap", [0, 5, 13])
def test_each_fold_leaves_exactly_gap_bars_before_its_test_block(gap):
    folds = GappedTimeSeriesCV(n_splits=3, test_size=0.2, gap=gap).split(CALENDAR)
    assert len(folds) == 3
    for fold in folds:
        train_end = np.searchsorted(CALENDAR, fold.train_end)
        test_start = np.searchsorted(CALENDAR, fold.test_start)
        assert test_start - train_end - 1 == gap
        assert fold.train_start == CALENDAR[0]
    # Test blocks are consecutive, disjoint and end at the calendar's end.
    for earlier, later in zip(folds, folds[1:]):
        assert np.searchsorted(CALENDAR, later.test_start) == np.searchsorted(CALENDAR, earlier.test_end) + 1
    assert folds[-1].test_end == CALENDAR[-1]


def test_a_sliding_window_trains_on_the_last_train_bars_before_each_gap():
    folds = GappedTimeSeriesCV(n_splits=3, test_size=0.2, gap=5, train_bars=60).split(CALENDAR)
    expanding = GappedTimeSeriesCV(n_splits=3, test_size=0.2, gap=5).split(CALENDAR)
    for fold, reference in zip(folds, expanding):
        start, end = np.searchsorted(CALENDAR, [fold.train_start, fold.train_end])
        assert end - start + 1 == 60 and fold.train_end == reference.train_end
        assert (fold.test_start, fold.test_end) == (reference.test_start, reference.test_end)
    # Sample-level splits keep the window too.
    times = np.repeat(CALENDAR, 2)
    splitter = GappedTimeSeriesCV(n_splits=3, test_size=0.2, gap=5, train_bars=60)
    for (train, _), fold in zip(splitter.split_samples(times, times), folds):
        assert times[train].min() == fold.train_start and len(train) == 2 * 60


def test_validation_carve_out_sits_inside_training_with_its_own_gap():
    fold = GappedTimeSeriesCV(3, 0.2, 5).split(CALENDAR)[0]
    fit_end, validation_start = carve_validation(CALENDAR, fold, validation_size=0.15, gap=5)
    assert fit_end < validation_start <= fold.train_end < fold.test_start
    assert np.searchsorted(CALENDAR, validation_start) - np.searchsorted(CALENDAR, fit_end) - 1 == 5


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"gap": -1}, r"`gap` must be >= 0. Received: gap=-1"),
        ({"n_splits": 0}, r"`n_splits` must be >= 1. Received: n_splits=0"),
        ({"n_splits": 5, "test_size": 0.2}, r"n_splits \* test_size < 1"),
    ],
)
def test_impossible_settings(arguments, message):
    with pytest.raises(ConfigError, match=message):
        GappedTimeSeriesCV(**{"n_splits": 3, "test_size": 0.2, "gap": 5, **arguments})


def test_too_few_bars():
    with pytest.raises(ConfigError, match=r"4 bars are too few for n_splits=3"):
        GappedTimeSeriesCV(3, 0.2, 5).split(CALENDAR[:4])
