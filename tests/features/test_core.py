"""No look-ahead: features and labels computed on bars truncated at t agree with the full history."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.data.panel import Panel
from keras_synapse.features import FEATURE_SETS, compute_features
from keras_synapse.labels import compute_labels


def truncation_mismatches(compute, bars, cut_points):
    """Rows at or before each cut where values from truncated bars differ from the full computation."""
    full = compute(bars)
    mismatches = []
    for cut in cut_points:
        truncated = compute(bars.iloc[: cut + 1])
        common = truncated.index
        if not np.allclose(truncated.to_numpy(), full.loc[common].to_numpy(), equal_nan=True, rtol=1e-9, atol=1e-12):
            mismatches.append(cut)
    return mismatches


# Sets with reference series are covered, references and all, by tests/test_no_lookahead.py.
@pytest.mark.parametrize("name", sorted(name for name, feature_set in FEATURE_SETS.items() if not feature_set.references))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_feature_sets_use_past_bars_only(name, seed):
    bars = make_bars(200, seed=seed)
    def compute(bars):
        return FEATURE_SETS[name].compute(bars, {})

    assert truncation_mismatches(compute, bars, cut_points=range(25, 200, 17)) == []


def test_the_truncation_check_catches_a_shifted_feature():
    bars = make_bars(200)

    def leaky(bars):  # tomorrow's return, as a careless shift(-1) would produce
        return FEATURE_SETS["core"].compute(bars, {}).assign(leak=np.log(bars["close"]).diff().shift(-1))

    assert truncation_mismatches(leaky, bars, cut_points=range(25, 200, 17)) != []


@pytest.mark.parametrize("scaling", ["none", "volatility"])
def test_labels_are_identical_wherever_their_end_time_is_known(scaling):
    bars = make_bars(200, seed=3)
    full = compute_labels(Panel({"A": bars}), horizon=5, scaling=scaling)["A"]
    for cut in range(30, 200, 23):
        truncated = compute_labels(Panel({"A": bars.iloc[: cut + 1]}), horizon=5, scaling=scaling)["A"]
        known = truncated.end_time.notna()
        assert (truncated.end_time[known] <= bars.index[cut]).all()
        np.testing.assert_allclose(truncated.values[known], full.values[known.index[known]], rtol=1e-12)
        # Nothing is claimed where the end time lies past the cut.
        assert truncated.values[~known].isna().all()


def test_label_end_time_is_horizon_bars_later():
    bars = make_bars(50)
    label = compute_labels(Panel({"A": bars}), horizon=5, scaling="none")["A"]
    assert label.end_time.iloc[0] == bars.index[5]
    assert label.end_time.iloc[-5:].isna().all()
    np.testing.assert_allclose(label.values.iloc[3], np.log(bars["close"].iloc[8] / bars["close"].iloc[3]))


def test_warmup_rows_are_dropped_not_filled():
    panel = Panel({"A": make_bars(100)})
    features = compute_features(panel, "core")["A"]
    assert np.isfinite(features.to_numpy()).all()
    assert features.index[0] == panel["A"].index[FEATURE_SETS["core"].warmup - 1]


def test_constant_volume_scores_zero_surprise():
    bars = make_bars(60).assign(volume=0.0)
    features = FEATURE_SETS["core"].compute(bars, {}).dropna()
    assert (features["volume_zscore_20"] == 0).all()
    assert isinstance(features.index, pd.DatetimeIndex)
