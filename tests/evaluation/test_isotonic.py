"""Isotonic calibration: scikit-learn's on the same inputs, and fitted on realized outcomes only."""

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from keras_synapse.evaluation.backtest import simulate_book
from keras_synapse.evaluation.isotonic import fit_isotonic, predict_isotonic


@pytest.mark.parametrize("seed", range(5))
def test_the_fit_is_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=400), 1)  # ties, which both average
    wins = (rng.random(400) < 1 / (1 + np.exp(-2 * scores))).astype(float)
    reference = IsotonicRegression(out_of_bounds="clip").fit(scores, wins)
    queries = np.concatenate([rng.normal(size=100) * 1.5, [-10.0, 10.0]])  # in between and beyond the data
    np.testing.assert_allclose(predict_isotonic(fit_isotonic(scores, wins), queries), reference.predict(queries),
                               atol=1e-12)


def test_isotonic_probabilities_use_realized_outcomes_only():
    from test_backtest import CALENDAR, make_frame

    rng = np.random.default_rng(1)
    num_bars = 70
    returns = {symbol: list(rng.normal(0.0, 0.02, num_bars)) for symbol in "ABC"}
    frame = make_frame(returns, prediction={s: list(rng.normal(size=num_bars)) for s in "ABC"},
                       past_return={s: list(rng.normal(size=num_bars)) for s in "ABC"})
    frame["prediction"] += 40 * frame["forward_return"]
    options = dict(signal="meta_label", probability_source="isotonic", min_history=6, sizing="kelly")
    base = simulate_book(frame, "prediction", 1, 0, CALENDAR, **options)
    assert base.probability_source == "isotonic" and (base.weights != 0).any()
    # Unrealized outcomes changed after the first refit leave every earlier position as it was.
    bar = CALENDAR.get_indexer(frame["timestamp"])
    rebalance = CALENDAR.get_loc(base.timestamps[30])
    perturbed = frame.copy()
    later = bar + 1 > rebalance
    perturbed.loc[later, "forward_return"] = rng.normal(0, 0.05, later.sum())
    book = simulate_book(perturbed, "prediction", 1, 0, CALENDAR, **options)
    np.testing.assert_array_equal(book.weights[:31], base.weights[:31])
