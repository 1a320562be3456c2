"""The stationary bootstrap over timestamps: exact metrics, arch's conventions, coverage and power."""

import numpy as np
import pandas as pd
import pytest
from arch.bootstrap import StationaryBootstrap, optimal_block_length

from keras_synapse.evaluation.summary import regression_metrics
from keras_synapse.evaluation.intervals import (
    TimestampSums,
    bootstrap_metrics,
    metrics_from_sums,
    minimum_detectable_effect,
    politis_white_block_length,
    stationary_resample_counts,
)


def autoregressive(rng, num_timestamps, num_symbols, coefficient):
    """Independent stationary AR(1) series, one per symbol, `[timestamps, symbols]`."""
    shocks = rng.standard_normal((num_timestamps, num_symbols))
    series = np.empty_like(shocks)
    series[0] = shocks[0] / np.sqrt(1 - coefficient**2)
    for row in range(1, num_timestamps):
        series[row] = coefficient * series[row - 1] + shocks[row]
    return series


def panel_frame(prediction, outcome):
    num_timestamps, num_symbols = prediction.shape
    return pd.DataFrame({"timestamp": np.repeat(np.arange(num_timestamps), num_symbols),
                         "prediction": prediction.ravel(), "reference": outcome.ravel(), "target": outcome.ravel()})


def test_metrics_from_per_timestamp_sums_equal_the_direct_computation():
    rng = np.random.default_rng(0)
    frame = panel_frame(rng.standard_normal((300, 7)), rng.standard_normal((300, 7)))
    frame.loc[::11, "reference"] = 0.0  # zero returns are excluded from directional accuracy
    frame["target"] = frame["reference"] * 2 + 0.1
    frame["prediction"] += 0.3 * frame["reference"]
    from_sums = metrics_from_sums(TimestampSums(frame, ["prediction"]).sums["prediction"].sum(axis=0))
    direct = regression_metrics(frame["prediction"], frame["target"], frame["reference"])
    for name, value in direct.items():
        assert float(from_sums[name]) == pytest.approx(value, abs=1e-12), name


def test_block_length_is_arch_politis_white_on_the_labels_and_the_same_whatever_the_model():
    rng = np.random.default_rng(1)
    series = autoregressive(rng, 2000, 1, 0.8)[:, 0]
    assert politis_white_block_length(series) == pytest.approx(optimal_block_length(series)["stationary"].iloc[0])
    outcome = autoregressive(rng, 1500, 4, 0.9)
    frame = panel_frame(autoregressive(rng, 1500, 4, 0.9), outcome)
    result = bootstrap_metrics(frame, ["prediction"], num_resamples=10)
    assert result.block_length == pytest.approx(optimal_block_length(outcome.mean(axis=1))["stationary"].iloc[0])
    # Persistent outcomes need long blocks; a floor holds where the data do not ask.
    assert result.block_length > 10
    # Another model on the same labels: the same block length, so a baseline's interval cannot move with the model.
    other = frame.assign(prediction=rng.standard_normal(len(frame)))
    assert bootstrap_metrics(other, ["prediction"], num_resamples=10).block_length == result.block_length
    white = panel_frame(rng.standard_normal((1500, 4)), rng.standard_normal((1500, 4)))
    assert bootstrap_metrics(white, ["prediction"], min_block_length=5, num_resamples=10).block_length == 5


def test_resample_counts_match_archs_stationary_bootstrap():
    rng = np.random.default_rng(2)
    series = autoregressive(rng, 1000, 1, 0.7)[:, 0]
    counts = stationary_resample_counts(len(series), 12.0, 2000, np.random.default_rng(3))
    assert (counts.sum(axis=1) == len(series)).all()
    ours = (counts @ series) / len(series)
    arch_bootstrap = StationaryBootstrap(12.0, series, seed=4)
    theirs = arch_bootstrap.apply(np.mean, 2000).ravel()
    # The same scheme: the spread of the resampled means agrees within Monte Carlo error (~3%).
    assert np.std(ours) == pytest.approx(np.std(theirs), rel=0.08)


def test_paired_difference_sees_what_two_unpaired_intervals_cannot():
    # Both predictors carry the same time series that happens to meet the
    # market's path (a wide interval for each); only the model adds a little
    # of each symbol's own outcome, which the same draws isolate.
    rng = np.random.default_rng(5)
    num_timestamps, num_symbols = 300, 10
    market = rng.standard_normal((num_timestamps, 1))
    own = rng.standard_normal((num_timestamps, num_symbols))
    shared = rng.standard_normal((num_timestamps, 1)) + 0.5 * rng.standard_normal((num_timestamps, num_symbols))
    frame = panel_frame(shared + 0.15 * own, market + own)
    frame["baseline"] = shared.ravel()
    result = bootstrap_metrics(frame, ["prediction", "baseline"], num_resamples=500)
    model_low, model_high = result.interval("prediction", "ic")
    baseline_low, baseline_high = result.interval("baseline", "ic")
    assert model_low < baseline_high and baseline_low < model_high  # the two intervals overlap...
    difference = result.difference("prediction", "baseline", "ic")
    assert difference["ci_low"] > 0  # ...but on the same draws the model is clearly better
    assert difference["difference"] == pytest.approx(result.point["prediction"]["ic"] - result.point["baseline"]["ic"])


def test_minimum_detectable_ic_is_detected_about_80_percent_of_the_time():
    # A run's own figure must mean what it says: an edge of exactly that size
    # clears zero in ~80% of samples of the same design.
    num_timestamps, num_symbols, persistence = 400, 5, 0.5

    def sample(seed, true_ic):
        rng = np.random.default_rng(seed)
        prediction = autoregressive(rng, num_timestamps, num_symbols, persistence) * np.sqrt(1 - persistence**2)
        outcome = true_ic * prediction + np.sqrt(1 - true_ic**2) * rng.standard_normal(prediction.shape)
        return bootstrap_metrics(panel_frame(prediction, outcome), ["prediction"], min_block_length=5,
                                 num_resamples=300, seed=seed)

    detectable = np.median([sample(seed, 0.0).minimum_detectable("prediction") for seed in range(20)])
    detected = [sample(100 + seed, detectable).interval("prediction", "ic")[0] > 0 for seed in range(80)]
    assert 0.68 <= np.mean(detected) <= 0.92, (detectable, np.mean(detected))


@pytest.mark.slow
@pytest.mark.parametrize("num_timestamps, num_symbols", [(1000, 4), (2400, 10)])
def test_ic_interval_keeps_its_coverage_when_predictions_and_outcomes_are_persistent(num_timestamps, num_symbols):
    # Independent AR(0.9) predictions and outcomes: the IC is zero, and a 95%
    # interval must exclude zero in at most ~5% of samples (7% allows for the
    # Monte Carlo error of 250 samples). The bootstrap alone excludes it
    # 7-11% of the time here; the long-run-variance floor brings it back.
    excluded = 0
    num_samples = 250
    for seed in range(num_samples):
        rng = np.random.default_rng(seed)
        frame = panel_frame(autoregressive(rng, num_timestamps, num_symbols, 0.9),
                            autoregressive(rng, num_timestamps, num_symbols, 0.9))
        low, high = bootstrap_metrics(frame, ["prediction"], min_block_length=5, num_resamples=300,
                                      seed=seed).interval("prediction", "ic")
        excluded += low > 0 or high < 0
    assert excluded / num_samples <= 0.07, excluded / num_samples


def test_minimum_detectable_effect_is_z_alpha_plus_z_power_standard_errors():
    assert minimum_detectable_effect(0.01) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-5)
    assert minimum_detectable_effect(0.01, power=0.5) == pytest.approx(1.959964 * 0.01, rel=1e-5)
