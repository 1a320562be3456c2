"""The LightGBM baseline: finds a planted nonlinear edge, claims none on noise, never sees the test targets."""

import dataclasses

import numpy as np

import planted_windows

from keras_synapse.evaluation.lightgbm_baseline import lightgbm_predictions, window_summaries


def windowed_universe(num_bars=1200, **options):
    return planted_windows.windowed_universe(8, num_bars, 3, **options)


def chronological_split(windowed):
    split = planted_windows.chronological_split(windowed, 0.6, 0.75)
    return split["fit"], split["validation"], split["test"]


def ic_of(windowed, predictions, test):
    return float(np.corrcoef(predictions, windowed.targets[test])[0, 1])


def test_the_summaries_are_the_last_bar_and_the_window_moments():
    windowed = windowed_universe()
    ends = windowed.labelled_ends()[:3]
    summaries = window_summaries(windowed, ends)
    sequence = windowed.gather(ends)["sequence"].astype(np.float64)
    width = sequence.shape[2]
    np.testing.assert_array_equal(summaries[:, :width], sequence[:, -1])
    np.testing.assert_allclose(summaries[:, width:2 * width], sequence.mean(axis=1))
    np.testing.assert_allclose(summaries[:, 2 * width:], sequence.std(axis=1))


def test_it_finds_a_planted_nonlinear_edge_no_ridge_sees_and_none_in_noise():
    from keras_synapse.evaluation.baselines import tuned_ridge_predictions

    # A volume-conditioned reversal: the drift is a product of two features, invisible to a linear model.
    planted = windowed_universe(3000, signal="nonlinear", oracle_ic=0.3)
    fit, validation, test = chronological_split(planted)
    predictions, trees = lightgbm_predictions(planted, fit, validation, test)
    ridge = tuned_ridge_predictions(planted, fit, validation, test)[0]
    assert ic_of(planted, predictions, test) > 0.08 > ic_of(planted, ridge, test) + 0.04 and trees >= 100
    noise = windowed_universe()
    fit, validation, test = chronological_split(noise)
    predictions, _ = lightgbm_predictions(noise, fit, validation, test)
    assert abs(ic_of(noise, predictions, test)) < 0.06


def test_the_test_targets_never_reach_the_fit():
    windowed = windowed_universe(signal="nonlinear", oracle_ic=0.3)
    fit, validation, test = chronological_split(windowed)
    scrambled_targets = windowed.targets.copy()
    scrambled_targets[test] = np.random.default_rng(0).permutation(scrambled_targets[test])
    scrambled = dataclasses.replace(windowed, targets=scrambled_targets)
    np.testing.assert_array_equal(lightgbm_predictions(windowed, fit, validation, test)[0],
                                  lightgbm_predictions(scrambled, fit, validation, test)[0])
