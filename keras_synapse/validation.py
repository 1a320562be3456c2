"""Time-series validation: folds on the panel's shared calendar, always gapped.

Folds are defined on timestamps, not rows, so every symbol shares the same
fold boundaries and no symbol's test bars precede another's training bars.
Each fold leaves `gap` bars between training and test; on top of that, the
trainer purges every training window whose label ends at or after the test
start, so a label longer than the gap still cannot leak.
"""

import dataclasses

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Fold:
    """One train/test split, as inclusive `datetime64` bounds."""

    index: int
    train_start: np.datetime64
    train_end: np.datetime64
    test_start: np.datetime64
    test_end: np.datetime64

    def as_dict(self):
        """The train and test ranges as ISO-8601 UTC strings, for `metrics.json`."""
        return {
            "train": [iso_utc(self.train_start), iso_utc(self.train_end)],
            "test": [iso_utc(self.test_start), iso_utc(self.test_end)],
        }


def iso_utc(timestamp):
    """A `datetime64` (naive UTC) as an ISO-8601 string with its UTC offset."""
    return pd.Timestamp(timestamp, tz="UTC").isoformat()


class GappedTimeSeriesCV:
    """Expanding-window CV with a gap before each test block (seed 004).

    The last `n_splits * test_size` of the calendar is cut into `n_splits`
    consecutive test blocks; fold k trains on everything before its test block
    except the `gap` bars just before it.

    Args:
        n_splits: number of folds. Defaults to `3`.
        test_size: fraction of the calendar in each test block. Defaults to
            `0.2`.
        gap: bars left out between training and test. Defaults to `5`.

    Example:

    >>> import numpy as np
    >>> calendar = np.arange("2020-01-01", "2020-04-10", dtype="datetime64[D]")
    >>> folds = GappedTimeSeriesCV(n_splits=3, test_size=0.2, gap=5).split(calendar)
    >>> [str(fold.test_start) for fold in folds]
    ['2020-02-09', '2020-02-29', '2020-03-20']
    """

    def __init__(self, n_splits=3, test_size=0.2, gap=5):
        if n_splits < 1:
            raise ConfigError(f"`n_splits` must be >= 1. Received: n_splits={n_splits}")
        if not 0 < test_size < 1 or n_splits * test_size >= 1:
            raise ConfigError(
                "`test_size` must be in (0, 1) with n_splits * test_size < 1. "
                f"Received: test_size={test_size}, n_splits={n_splits}"
            )
        if gap < 0:
            raise ConfigError(f"`gap` must be >= 0. Received: gap={gap}")
        self.n_splits = n_splits
        self.test_size = test_size
        self.gap = gap

    def split(self, calendar):
        """Returns the folds for a sorted array of unique timestamps.

        Raises:
            ConfigError: when the calendar is too short for the folds.
        """
        num_bars = len(calendar)
        test_length = int(num_bars * self.test_size)
        first_test = num_bars - self.n_splits * test_length
        if test_length < 1 or first_test - self.gap < 2:
            raise ConfigError(
                f"{num_bars} bars are too few for n_splits={self.n_splits}, test_size={self.test_size}, "
                f"gap={self.gap}: each fold needs at least one test bar and two training bars."
            )
        folds = []
        for index in range(self.n_splits):
            test_start = first_test + index * test_length
            folds.append(
                Fold(
                    index=index,
                    train_start=calendar[0],
                    train_end=calendar[test_start - self.gap - 1],
                    test_start=calendar[test_start],
                    test_end=calendar[test_start + test_length - 1],
                )
            )
        return folds


def carve_validation(calendar, fold, validation_size, gap):
    """Splits a fold's training period into a fit part and an early-stopping part.

    The validation part is the last `validation_size` of the training bars,
    separated from the fit part by `gap` bars, so early stopping never looks
    at the test fold and the fit labels do not reach into validation.

    Args:
        calendar: sorted unique timestamps of the panel.
        fold: a `Fold`.
        validation_size: fraction of the training bars used for validation.
        gap: bars between the fit part and the validation part.

    Returns:
        `(fit_end, validation_start)` as `datetime64` bounds: fit windows end
        at or before `fit_end`; validation windows end in
        `[validation_start, fold.train_end]`.

    Raises:
        ConfigError: when the training period is too short to carve.
    """
    train = calendar[(calendar >= fold.train_start) & (calendar <= fold.train_end)]
    validation_length = max(1, int(len(train) * validation_size))
    validation_start = len(train) - validation_length
    fit_end = validation_start - gap - 1
    if fit_end < 1:
        raise ConfigError(
            f"Fold {fold.index}: {len(train)} training bars are too few to carve a validation part "
            f"of {validation_size:.0%} with gap={gap}."
        )
    return train[fit_end], train[validation_start]
