"""Every splitter keeps training labels away from test blocks, and shuffled k-fold is shown to leak."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.data.panel import Panel
from keras_synapse.evaluation.summary import metric_intervals, regression_metrics
from keras_synapse.features import compute_features
from keras_synapse.labels import compute_labels
from keras_synapse.windows.dataset import build_windowed_panel
from keras_synapse.windows.splitters import CombinatorialPurgedCV, GappedTimeSeriesCV, PurgedKFold, WalkForwardCV

HORIZON = 5
EMBARGO = 3


def multi_symbol_samples():
    # Three symbols with unequal histories and start dates.
    panel = Panel({
        "AAA": make_bars(400, seed=1),
        "BBB": make_bars(250, seed=2, start="2024-04-01"),
        "CCC": make_bars(320, seed=3, start="2024-02-15"),
    })
    windowed = build_windowed_panel(
        compute_features(panel, "core"), compute_labels(panel, horizon=HORIZON, scaling="none"), 10, HORIZON
    )
    ends = windowed.labelled_ends()
    return windowed.timestamps[ends], windowed.label_end_times[ends], windowed.calendar


SPLITTERS = {
    "gapped": (lambda times, ends: GappedTimeSeriesCV(3, 0.2, HORIZON).split_samples(times, ends), 0),
    "purged_kfold": (lambda times, ends: PurgedKFold(5, EMBARGO).split(times, ends), EMBARGO),
    "combinatorial": (lambda times, ends: CombinatorialPurgedCV(6, 2, EMBARGO).split(times, ends), EMBARGO),
    "walk_forward_expanding": (lambda times, ends: WalkForwardCV(4, 40, None, HORIZON).split(times, ends), 0),
    "walk_forward_sliding": (lambda times, ends: WalkForwardCV(4, 40, 120, HORIZON).split(times, ends), 0),
}


@pytest.mark.parametrize("name", sorted(SPLITTERS))
def test_no_training_label_reaches_a_test_block_or_its_embargo(name):
    times, end_times, calendar = multi_symbol_samples()
    split, embargo = SPLITTERS[name]
    splits = split(times, end_times)
    assert len(splits) >= 3
    position = {time: index for index, time in enumerate(calendar)}
    for train, test in splits:
        assert len(train) and len(test) and not np.intersect1d(train, test).size
        test_positions = np.array([position[time] for time in times[test]])
        # Contiguous test blocks on the calendar (a combinatorial split may have two).
        breaks = np.flatnonzero(np.diff(np.unique(test_positions)) > 1)
        blocks = np.split(np.unique(test_positions), breaks + 1)
        for block in blocks:
            first, last = calendar[block[0]], calendar[block[-1]]
            in_block = (times >= first) & (times <= last)
            # The block's labels run to their latest end time; the embargo counts bars from there.
            span_end = end_times[in_block].max()
            embargo_end = calendar[min(np.searchsorted(calendar, span_end, side="right") - 1 + embargo,
                                       len(calendar) - 1)]
            # A training sample's label interval [time, end_time] never touches [first, embargo_end].
            touching = (times[train] <= max(embargo_end, span_end)) & (end_times[train] >= first)
            assert not touching.any(), f"{name}: training sample at {times[train][touching][0]} touches {first}..{last}"


def test_purging_uses_label_end_time_whatever_the_gap():
    times, end_times, _ = multi_symbol_samples()
    # gap=0 but 5-bar labels: purging alone must still keep training labels out of the test block.
    (train, test), *_ = WalkForwardCV(3, 40, None, gap=0).split(times, end_times)
    assert end_times[train].max() < times[test].min()


NUM_SAMPLES, GROUPS = 120, 6


def _one_bar_per_sample():
    times = np.arange(NUM_SAMPLES).astype("datetime64[D]")
    return times, times + HORIZON  # each label spans the next HORIZON bars


@pytest.mark.parametrize("embargo", [0, 2])
def test_combinatorial_splits_equal_skfolio(embargo):
    """skfolio purges `purged_size` rows before and after each test block, then embargoes; so must we."""
    from skfolio.model_selection import CombinatorialPurgedCV as SkfolioCPCV

    reference = SkfolioCPCV(n_folds=GROUPS, n_test_folds=2, purged_size=HORIZON, embargo_size=embargo)
    expected = {tuple(np.concatenate(test)): tuple(train)
                for train, test in reference.split(np.zeros((NUM_SAMPLES, 1)))}
    splits = CombinatorialPurgedCV(GROUPS, 2, embargo).split(*_one_bar_per_sample())
    assert len(splits) == len(expected) == 15
    for train, test in splits:
        assert expected[tuple(test)] == tuple(train), f"test rows {test[0]}..{test[-1]}"


@pytest.mark.parametrize("embargo", [0, 2])
def test_purged_kfold_splits_equal_the_textbook(embargo):
    """AFML snippets 7.1-7.3 on one bar per sample: the HORIZON rows before a test block are purged, and the
    HORIZON + embargo rows after it (skfolio's rule; skfolio's CPCV itself needs two test groups)."""
    splits = PurgedKFold(GROUPS, embargo).split(*_one_bar_per_sample())
    rows = np.arange(NUM_SAMPLES)
    for (train, test), block in zip(splits, np.array_split(rows, GROUPS)):
        dropped = (rows >= block[0] - HORIZON) & (rows <= block[-1] + HORIZON + embargo)
        np.testing.assert_array_equal(test, block)
        np.testing.assert_array_equal(train, rows[~dropped])


def test_combinatorial_paths_cover_every_group_once():
    splitter = CombinatorialPurgedCV(6, 2)
    assert splitter.num_paths == 5 and len(splitter.combinations()) == 15
    for path in splitter.paths():
        for group, split_index in enumerate(path):
            assert group in splitter.combinations()[split_index]


# --- The leakage demonstration ----------------------------------------------


def nearest_neighbour_predictions(train_features, train_targets, test_features):
    distances = ((test_features[:, None, :] - train_features[None, :, :]) ** 2).sum(axis=2)
    return train_targets[distances.argmin(axis=1)]


def cross_validated_ic(splits, features, targets, times, horizon):
    """The pooled IC of 1-nearest-neighbour predictions and its 95% block-bootstrap interval."""
    predictions = np.full(len(targets), np.nan)
    for train, test in splits:
        predictions[test] = nearest_neighbour_predictions(features[train], targets[train], features[test])
    scored = np.isfinite(predictions)
    frame = pd.DataFrame({"timestamp": times[scored], "prediction": predictions[scored],
                          "target": targets[scored], "reference": targets[scored]})
    interval = metric_intervals(frame, "prediction", min_block_length=horizon, num_resamples=300)["ic"]
    return regression_metrics(predictions[scored], targets[scored], targets[scored])["ic"], interval


def test_shuffled_kfold_inflates_a_random_walk_score_while_purged_splitters_report_chance():
    rng = np.random.default_rng(0)
    num_bars, horizon = 1500, 20
    log_price = np.cumsum(rng.normal(0, 0.01, num_bars + horizon))
    # An overlapping forward-return label, and stationary features that drift
    # slowly in time (30/60/120-bar trailing returns): neighbours in feature
    # space are mostly neighbours in time, whose labels share most of their bars.
    targets = log_price[horizon:] - log_price[:-horizon]
    valid = np.arange(120, num_bars)
    features = np.stack([log_price[valid] - log_price[valid - lag] for lag in (30, 60, 120)], axis=1)
    features, targets = features / features.std(axis=0), targets[valid]
    times = np.arange(len(valid)).astype("datetime64[D]")
    end_times = times + horizon

    shuffled = rng.permutation(len(valid))
    shuffled_splits = [(np.setdiff1d(shuffled, part), part) for part in np.array_split(shuffled, 5)]
    leaky_ic, leaky_interval = cross_validated_ic(shuffled_splits, features, targets, times, horizon)
    # Clearly inflated, though a random walk holds nothing to predict.
    assert leaky_ic > 0.4 and leaky_interval[0] > 0.25, (leaky_ic, leaky_interval)
    for splits in (
        PurgedKFold(5, embargo=horizon).split(times, end_times),
        # Without an embargo purging alone must keep it honest: the rows just after a test block, whose labels
        # overlap the test labels, once scored IC +0.10 here.
        PurgedKFold(5, embargo=0).split(times, end_times),
        GappedTimeSeriesCV(3, 0.2, horizon).split_samples(times, end_times),
    ):
        ic, (low, high) = cross_validated_ic(splits, features, targets, times, horizon)
        # Chance: a 95% interval around zero (the seed is fixed; about one seed
        # in twenty would miss by construction of a 95% interval).
        assert low < 0 < high and abs(ic) < 0.2, (ic, low, high)
