"""The probability of backtest overfitting: about one half when trials are noise, near zero for a real-sized edge."""

import numpy as np
import pandas as pd
import pytest

from keras_synapse.errors import ConfigError
from keras_synapse.evaluation.overfitting import date_scores, probability_of_backtest_overfitting, trial_matrix


def test_the_definition_on_a_case_worked_by_hand():
    # Two blocks of two dates. A wins the first block and loses the second to B, which is flat:
    # whichever half is in-sample, its winner is the worst out of sample.
    performance = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    result = probability_of_backtest_overfitting(performance, num_blocks=2)
    assert result["num_combinations"] == 2 and result["pbo"] == 1.0
    assert result["logits"] == pytest.approx([np.log(0.5)] * 2)  # rank 1 of 2: w = 1/3
    # A better on every date: always picked, always best out of sample.
    steady = np.array([[1.0, 0.0]] * 4)
    result = probability_of_backtest_overfitting(steady, num_blocks=2)
    assert result["pbo"] == 0.0 and result["logits"] == pytest.approx([np.log(2.0)] * 2)


def _search(edge, seed, num_dates=1000, num_trials=20):
    # Per-date IC shares of trials scored on six symbols a date (spread about 1 / sqrt(6)).
    performance = np.random.default_rng(seed).normal(0, 0.41, (num_dates, num_trials))
    performance[:, 0] += edge
    return probability_of_backtest_overfitting(performance, num_blocks=16)["pbo"]


def test_pbo_is_about_one_half_on_noise_and_near_zero_for_a_real_sized_edge():
    noise = [_search(0.0, seed) for seed in range(12)]
    assert 0.35 < np.median(noise) < 0.65
    # One trial with IC 0.05 on 1,000 validation dates among 19 without: the search finds it.
    edge = [_search(0.05, seed) for seed in range(12)]
    assert np.median(edge) < 0.2 and np.median(edge) < np.median(noise) - 0.25


def test_date_scores_are_each_dates_share_of_the_pooled_ic():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"timestamp": np.repeat(pd.date_range("2024-01-01", periods=50, tz="UTC"), 4),
                          "prediction": rng.normal(size=200), "reference": rng.normal(size=200)})
    frame["reference"] += 0.3 * frame["prediction"]
    scores = date_scores(frame)
    assert len(scores) == 50
    assert scores.mean() == pytest.approx(np.corrcoef(frame["prediction"], frame["reference"])[0, 1])
    matrix, dates, trials = trial_matrix({"a": scores, "b": scores.iloc[10:]})
    assert matrix.shape == (40, 2) and trials == ["a", "b"]


def test_bad_inputs_say_what_was_received():
    with pytest.raises(ConfigError, match="at least two trials"):
        probability_of_backtest_overfitting(np.zeros((10, 1)))
    with pytest.raises(ConfigError, match="even"):
        probability_of_backtest_overfitting(np.zeros((10, 3)), num_blocks=3)
    with pytest.raises(ConfigError, match="finite"):
        probability_of_backtest_overfitting(np.full((10, 3), np.nan), num_blocks=2)
