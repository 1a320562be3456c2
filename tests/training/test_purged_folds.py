"""Purged folds seen by the trainer: no training window's label overlaps a test label, nor does anything fitted."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.config import ExperimentConfig
from keras_synapse.data.panel import Panel
from keras_synapse.features import compute_features
from keras_synapse.labels import compute_labels
from keras_synapse.training.preparation import fold_windows, make_folds
from keras_synapse.windows.dataset import build_windowed_panel

HORIZON, EMBARGO = 5, 3


@pytest.fixture(scope="module")
def windowed():
    panel = Panel({"AAA": make_bars(400, seed=1), "BBB": make_bars(400, seed=2)})
    return build_windowed_panel(compute_features(panel, "core"), compute_labels(panel, horizon=HORIZON), 10, HORIZON)


@pytest.mark.parametrize("cv, expected_folds", [("purged_kfold", 4), ("cpcv", 6)])
def test_training_windows_never_overlap_a_test_label_or_its_embargo(windowed, cv, expected_folds):
    config = ExperimentConfig(cv=cv, n_splits=4, cv_groups=4, cv_test_groups=2, embargo=EMBARGO, horizon=HORIZON,
                              gap=HORIZON, stride=1)
    calendar = windowed.calendar
    folds = make_folds(config, calendar)
    assert len(folds) == expected_folds
    tested = []
    for fold in folds:
        split = fold_windows(windowed, calendar, fold, config)
        times, ends = windowed.timestamps, windowed.label_end_times
        for first, last in fold.test_blocks:
            block = split["test"][(times[split["test"]] >= first) & (times[split["test"]] <= last)]
            span_end = ends[block].max()
            embargo_end = calendar[min(np.searchsorted(calendar, span_end) + EMBARGO, len(calendar) - 1)]
            for part in ("fit", "validation", "baseline_fit"):
                rows = split[part]
                overlaps = (times[rows] <= embargo_end) & (ends[rows] >= first)
                assert not overlaps.any(), (cv, fold.index, part)
            # The normalization is fitted on no feature row of a test block.
            assert not (split["fit_rows"] & (times >= first) & (times <= last)).any()
        # Early stopping's windows come after the fit part, whose labels end before them.
        assert ends[split["fit"]].max() < times[split["validation"]].min()
        tested.append(split["test"])
    labelled = windowed.labelled_ends()
    if cv == "purged_kfold":  # every labelled window is tested exactly once
        assert np.array_equal(np.sort(np.concatenate(tested)), labelled)
    else:  # each of 4 blocks is tested by C(3, 1) = 3 of the 6 splits
        assert len(np.concatenate(tested)) == 3 * len(labelled)


def test_a_head_per_horizon_gets_its_own_labels_and_the_latest_end_purges():
    from keras_synapse.training.preparation import prepare_data

    config = ExperimentConfig(model="multitask", label="forward_return", horizon=5, gap=10,
                              heads="return_1=forward_return@1;return_5=forward_return;return_10=forward_return@10")
    data = prepare_data(config, quick=True)
    windowed, targets = data.windowed, data.windowed.head_targets
    assert set(targets) == {"return_1", "return_5", "return_10"} and data.primary_head == "return_5"
    assert {task.label for task in data.head_tasks.values()} == {"forward_return"}
    np.testing.assert_array_equal(targets["return_5"], windowed.targets)
    # The 1-bar and 10-bar heads hold their own horizons' returns, and purging waits for the 10-bar label.
    first = windowed.labelled_ends()[0]
    symbol = windowed.symbol_names[windowed.symbol_codes[first]]
    close = data.panel[symbol]["close"]
    position = close.index.get_loc(pd.Timestamp(windowed.timestamps[first], tz="UTC"))
    scale = targets["return_1"][first] / np.log(close.iloc[position + 1] / close.iloc[position])
    assert np.isfinite(scale) and scale > 0  # the volatility-scaled 1-bar return
    assert windowed.label_end_times[first] == close.index[position + 10].tz_convert(None).to_datetime64()
