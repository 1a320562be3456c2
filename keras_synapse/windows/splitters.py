"""Time-series validation: folds on the panel's shared calendar, always gapped or purged.

Folds are defined on timestamps, not rows, so every symbol shares the same
fold boundaries. A walk-forward fold leaves `gap` bars between training and
test; on top of that, the trainer purges every training window whose label
ends at or after the test start, so a label longer than the gap still cannot
leak. Purged k-fold and combinatorial purged CV train on both sides of their
test blocks, purged (a training label overlapping a test label's interval,
before or after the block) and embargoed after each block.
"""

import dataclasses

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError

# The splitters an experiment's `cv` names (see `keras_synapse.training.preparation.make_folds`).
SPLITTERS = ("walk_forward", "purged_kfold", "cpcv")


@dataclasses.dataclass(frozen=True)
class Fold:
    """One train/test split, as inclusive `datetime64` bounds.

    A walk-forward fold trains on `[train_start, train_end]` and tests on
    `[test_start, test_end]`. A purged fold (k-fold, combinatorial) sets
    `test_blocks`, the `(first, last)` times of each test block: it trains on
    every other bar of `[train_start, train_end]`, purged around each block.
    """

    index: int
    train_start: np.datetime64
    train_end: np.datetime64
    test_start: np.datetime64
    test_end: np.datetime64
    test_blocks: tuple = ()

    def as_dict(self):
        """The train and test ranges as ISO-8601 UTC strings, for `metrics.json`."""
        ranges = {
            "train": [iso_utc(self.train_start), iso_utc(self.train_end)],
            "test": [iso_utc(self.test_start), iso_utc(self.test_end)],
        }
        if self.test_blocks:
            ranges["test_blocks"] = [[iso_utc(first), iso_utc(last)] for first, last in self.test_blocks]
        return ranges


def _purged_folds(calendar, blocks, tested_groups):
    """A `Fold` per choice of tested blocks, training on the whole calendar around them."""
    folds = []
    for index, groups in enumerate(tested_groups):
        test_blocks = tuple((blocks[group][0], blocks[group][-1]) for group in groups)
        folds.append(Fold(index=index, train_start=calendar[0], train_end=calendar[-1],
                          test_start=test_blocks[0][0], test_end=test_blocks[-1][1], test_blocks=test_blocks))
    return folds


def iso_utc(timestamp):
    """A `datetime64` (naive UTC) as an ISO-8601 string with its UTC offset."""
    return pd.Timestamp(timestamp, tz="UTC").isoformat()


class GappedTimeSeriesCV:
    """Walk-forward CV with a gap before each test block (seed 004), expanding or sliding.

    The last `n_splits * test_size` of the calendar is cut into `n_splits`
    consecutive test blocks; fold k trains on everything before its test block
    except the `gap` bars just before it (expanding), or on the `train_bars`
    bars before that (sliding: each fold forgets the oldest data, for a
    market whose behaviour changes).

    Args:
        n_splits: number of folds. Defaults to `3`.
        test_size: fraction of the calendar in each test block. Defaults to
            `0.2`.
        gap: bars left out between training and test. Defaults to `5`.
        train_bars: bars in a sliding training window, or `0` for an
            expanding one. Defaults to `0`.

    Example:

    >>> import numpy as np
    >>> calendar = np.arange("2020-01-01", "2020-04-10", dtype="datetime64[D]")
    >>> folds = GappedTimeSeriesCV(n_splits=3, test_size=0.2, gap=5).split(calendar)
    >>> [str(fold.test_start) for fold in folds]
    ['2020-02-10', '2020-03-01', '2020-03-21']
    """

    def __init__(self, n_splits=3, test_size=0.2, gap=5, train_bars=0):
        if n_splits < 1:
            raise ConfigError(f"`n_splits` must be >= 1. Received: n_splits={n_splits}")
        if not 0 < test_size < 1 or n_splits * test_size >= 1:
            raise ConfigError(
                "`test_size` must be in (0, 1) with n_splits * test_size < 1. "
                f"Received: test_size={test_size}, n_splits={n_splits}"
            )
        if gap < 0:
            raise ConfigError(f"`gap` must be >= 0. Received: gap={gap}")
        if train_bars < 0:
            raise ConfigError(f"`train_bars` must be >= 0 (0: expanding). Received: train_bars={train_bars}")
        self.n_splits = n_splits
        self.test_size = test_size
        self.gap = gap
        self.train_bars = train_bars

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
            train_end = test_start - self.gap - 1
            folds.append(
                Fold(
                    index=index,
                    train_start=calendar[sliding_start(train_end, self.train_bars)],
                    train_end=calendar[train_end],
                    test_start=calendar[test_start],
                    test_end=calendar[test_start + test_length - 1],
                )
            )
        return folds

    def split_samples(self, times, end_times):
        """Sample-level folds, like the other splitters: `[(train_rows, test_rows), ...]`.

        Training samples end at least `gap` bars before the test block and are
        also purged by label end time.
        """
        times, end_times = _check_samples(times, end_times)
        calendar = np.unique(times)
        rows = np.arange(len(times))
        splits = []
        for fold in self.split(calendar):
            train = rows[(times >= fold.train_start) & (times <= fold.train_end)]
            train = purge_and_embargo(train, times, end_times, [(fold.test_start, fold.test_end)], calendar, 0)
            splits.append((train, rows[(times >= fold.test_start) & (times <= fold.test_end)]))
        return splits


def sliding_start(train_end, train_bars):
    """The calendar position where a training window of `train_bars` bars ending at `train_end` starts (0: all)."""
    return 0 if train_bars == 0 else max(0, train_end - train_bars + 1)


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


# --- Sample-level splitters -------------------------------------------------
#
# These split samples (window ends) given each sample's time and its label's
# end time, and purge every training sample whose label interval
# [time, end_time] overlaps a test block's label span (the block to its
# labels' last end time), then embargo the bars just after that span.
# They follow "Advances in Financial Machine Learning" (ch. 7,
# 12) and skfolio's CombinatorialPurgedCV.


def _check_samples(times, end_times):
    times, end_times = np.asarray(times), np.asarray(end_times)
    if times.shape != end_times.shape:
        raise ConfigError(f"`times` and `end_times` must have one entry per sample. Received shapes "
                          f"{times.shape} and {end_times.shape}")
    if (end_times < times).any():
        first = int(np.argmax(end_times < times))
        raise ConfigError(f"A label cannot end before its sample: sample {first} has time {times[first]} and "
                          f"end time {end_times[first]}")
    return times, end_times


def purge_and_embargo(train_rows, times, end_times, test_blocks, calendar, embargo):
    """Drops training samples whose label overlaps a test label's interval or the embargo after it.

    As in *Advances in Financial Machine Learning* (snippets 7.1-7.3) and
    skfolio's `CombinatorialPurgedCV`: a test block's labels span from its
    first sample's time to the latest end time of its labels, which lies
    beyond the block; a training sample whose label interval `[time,
    end_time]` overlaps that span is purged, before the block or after it,
    and so are the `embargo` bars after the span.

    Args:
        train_rows: candidate training sample positions.
        times: each sample's time.
        end_times: each sample's label end time.
        test_blocks: `(first_time, last_time)` of each contiguous test block.
        calendar: sorted unique times, to count embargo bars.
        embargo: bars after each test block's label span whose samples are
            also dropped.

    Returns:
        The kept training sample positions.
    """
    keep = np.ones(len(train_rows), dtype=bool)
    for first, last in test_blocks:
        in_block = (times >= first) & (times <= last)
        label_span_end = max(last, end_times[in_block].max()) if in_block.any() else last
        # The span's last calendar bar, then `embargo` bars on (a span past the calendar's end keeps its own end).
        span_position = np.searchsorted(calendar, label_span_end, side="right") - 1
        embargo_end = max(label_span_end, calendar[min(span_position + embargo, len(calendar) - 1)])
        overlaps = (times[train_rows] <= embargo_end) & (end_times[train_rows] >= first)
        keep &= ~overlaps
    return train_rows[keep]


def _blocks(calendar, num_groups):
    if num_groups < 2 or num_groups > len(calendar):
        raise ConfigError(f"Cannot cut {len(calendar)} time stamps into {num_groups} groups (needs 2 <= groups <= "
                          f"time stamps).")
    return np.array_split(calendar, num_groups)


class PurgedKFold:
    """K-fold over time blocks with purging by label end time and an embargo.

    Unlike a shuffled k-fold, each test fold is one contiguous block of time;
    training uses the blocks before and after it, minus every sample whose
    label interval overlaps the test labels' (purging: the samples whose label
    reaches into the block, and those after it that start before the test
    labels end) and the `embargo` bars after that (so serial correlation
    cannot carry test information back).

    Args:
        n_splits: number of folds. Defaults to `5`.
        embargo: bars after each test block excluded from training. Defaults
            to `0`.
    """

    def __init__(self, n_splits=5, embargo=0):
        if n_splits < 2:
            raise ConfigError(f"`n_splits` must be >= 2. Received: n_splits={n_splits}")
        if embargo < 0:
            raise ConfigError(f"`embargo` must be >= 0. Received: embargo={embargo}")
        self.n_splits = n_splits
        self.embargo = embargo

    def calendar_folds(self, calendar):
        """One purged `Fold` per time block of `calendar` (sorted unique times); the trainer purges."""
        return _purged_folds(calendar, _blocks(calendar, self.n_splits), [(group,) for group in range(self.n_splits)])

    def split(self, times, end_times):
        """Returns `[(train_rows, test_rows), ...]`, one pair per fold."""
        times, end_times = _check_samples(times, end_times)
        calendar = np.unique(times)
        rows = np.arange(len(times))
        splits = []
        for block in _blocks(calendar, self.n_splits):
            test = rows[(times >= block[0]) & (times <= block[-1])]
            train = purge_and_embargo(np.setdiff1d(rows, test), times, end_times, [(block[0], block[-1])],
                                      calendar, self.embargo)
            splits.append((train, test))
        return splits


class CombinatorialPurgedCV:
    """Combinatorial purged CV: every choice of `n_test_groups` of `n_groups` time blocks.

    Each of the C(n_groups, n_test_groups) splits tests on its chosen blocks
    and trains on the rest, purged and embargoed around every test block.
    Each block is tested in C(n_groups - 1, n_test_groups - 1) splits, which
    assemble into that many complete backtest paths (`paths()`), giving a
    distribution of out-of-sample results instead of one.

    Args:
        n_groups: time blocks. Defaults to `6`.
        n_test_groups: blocks tested per split. Defaults to `2`.
        embargo: bars after each test block excluded from training. Defaults
            to `0`.
    """

    def __init__(self, n_groups=6, n_test_groups=2, embargo=0):
        if not 1 <= n_test_groups < n_groups:
            raise ConfigError(f"`n_test_groups` must be in [1, n_groups). Received: n_test_groups={n_test_groups}, "
                              f"n_groups={n_groups}")
        if embargo < 0:
            raise ConfigError(f"`embargo` must be >= 0. Received: embargo={embargo}")
        self.n_groups = n_groups
        self.n_test_groups = n_test_groups
        self.embargo = embargo

    def combinations(self):
        """The test-group tuple of each split, in split order."""
        import itertools

        return list(itertools.combinations(range(self.n_groups), self.n_test_groups))

    @property
    def num_paths(self):
        import math

        return math.comb(self.n_groups - 1, self.n_test_groups - 1)

    def paths(self):
        """`paths()[p][g]` is the split whose predictions path p uses for group g."""
        uses = {group: [index for index, combination in enumerate(self.combinations()) if group in combination]
                for group in range(self.n_groups)}
        return [[uses[group][path] for group in range(self.n_groups)] for path in range(self.num_paths)]

    def calendar_folds(self, calendar):
        """One purged `Fold` per combination of test blocks of `calendar`; the trainer purges."""
        return _purged_folds(calendar, _blocks(calendar, self.n_groups), self.combinations())

    def split(self, times, end_times):
        """Returns `[(train_rows, test_rows), ...]`, one pair per combination."""
        times, end_times = _check_samples(times, end_times)
        calendar = np.unique(times)
        rows = np.arange(len(times))
        blocks = _blocks(calendar, self.n_groups)
        splits = []
        for combination in self.combinations():
            tested = [(blocks[group][0], blocks[group][-1]) for group in combination]
            in_test = np.zeros(len(times), dtype=bool)
            for first, last in tested:
                in_test |= (times >= first) & (times <= last)
            train = purge_and_embargo(rows[~in_test], times, end_times, tested, calendar, self.embargo)
            splits.append((train, rows[in_test]))
        return splits


class WalkForwardCV:
    """Walk-forward validation with an expanding or sliding training window (seed 000).

    The last `n_splits * test_size` bars are cut into consecutive test blocks;
    each trains on the `train_size` bars before its block (all earlier bars
    when `train_size` is `None`), leaves `gap` bars out, and purges samples
    whose label reaches the test block.

    Args:
        n_splits: number of folds. Defaults to `5`.
        test_size: bars per test block. Defaults to `63`.
        train_size: bars in a sliding training window, or `None` for an
            expanding one. Defaults to `None`.
        gap: bars between training and test. Defaults to `0`.
    """

    def __init__(self, n_splits=5, test_size=63, train_size=None, gap=0):
        for name, value in (("n_splits", n_splits), ("test_size", test_size)):
            if value < 1:
                raise ConfigError(f"`{name}` must be >= 1. Received: {name}={value}")
        if train_size is not None and train_size < 1:
            raise ConfigError(f"`train_size` must be >= 1 or None. Received: train_size={train_size}")
        if gap < 0:
            raise ConfigError(f"`gap` must be >= 0. Received: gap={gap}")
        self.n_splits, self.test_size, self.train_size, self.gap = n_splits, test_size, train_size, gap

    def split(self, times, end_times):
        """Returns `[(train_rows, test_rows), ...]`, oldest test block first."""
        times, end_times = _check_samples(times, end_times)
        calendar = np.unique(times)
        first_test = len(calendar) - self.n_splits * self.test_size
        if first_test - self.gap < 1:
            raise ConfigError(f"{len(calendar)} time stamps are too few for n_splits={self.n_splits}, "
                              f"test_size={self.test_size}, gap={self.gap}.")
        rows = np.arange(len(times))
        splits = []
        for index in range(self.n_splits):
            test_start = first_test + index * self.test_size
            test_block = calendar[test_start : test_start + self.test_size]
            train_end = test_start - self.gap - 1
            train_start = sliding_start(train_end, self.train_size or 0)
            train = rows[(times >= calendar[train_start]) & (times <= calendar[train_end])]
            train = purge_and_embargo(train, times, end_times, [(test_block[0], test_block[-1])], calendar, 0)
            splits.append((train, rows[(times >= test_block[0]) & (times <= test_block[-1])]))
        return splits
