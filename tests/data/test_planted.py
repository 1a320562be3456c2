"""Planted edges of every kind: realistic sizes, exact oracles, and what a linear model can see."""

import numpy as np
import pandas as pd
import pytest

from keras_synapse.data.planted import SIGNAL_KINDS, population_oracle_ic, strength_for_oracle_ic
from keras_synapse.data.synthetic import generate_universe
from keras_synapse.errors import ConfigError

HORIZON = 5


def _matrix(series_by_symbol):
    return np.column_stack([series.to_numpy() for series in series_by_symbol.values()])


def _log_returns_and_forward(universe):
    log_close = np.log(np.column_stack([frame["close"].to_numpy() for frame in universe.panel.values()]))
    forward = np.full_like(log_close, np.nan)
    forward[:-HORIZON] = log_close[HORIZON:] - log_close[:-HORIZON]
    log_returns = np.vstack([np.full(log_close.shape[1], np.nan), np.diff(log_close, axis=0)])
    return log_returns, forward


def _pooled_correlation(first, second):
    both = np.isfinite(first) & np.isfinite(second)
    return float(np.corrcoef(first[both], second[both])[0, 1])


@pytest.fixture(scope="module", params=SIGNAL_KINDS)
def planted(request):
    # Large enough that the realized oracle IC is within ~0.006 of its population value.
    return generate_universe(num_symbols=40, num_bars=10000, seed=11, signal=request.param, oracle_ic=0.05,
                             horizon=HORIZON)


def test_oracle_ic_is_calibrated_to_the_requested_strength(planted):
    _, forward = _log_returns_and_forward(planted)
    achieved = _pooled_correlation(_matrix(planted.expected_return), forward)
    assert planted.oracle_ic == pytest.approx(0.05, abs=1e-9)
    assert achieved == pytest.approx(0.05, abs=0.012), (planted.signal, achieved)


def test_oracle_is_the_conditional_expectation(planted):
    # Regressing the realized forward return on the oracle gives slope 1:
    # what the oracle misses is uncorrelated with it.
    oracle = _matrix(planted.expected_return)
    _, forward = _log_returns_and_forward(planted)
    known = np.isfinite(forward)
    slope = np.sum(oracle[known] * forward[known]) / np.sum(oracle[known] ** 2)
    assert slope == pytest.approx(1.0, abs=0.25), (planted.signal, slope)


def test_bars_and_oracle_up_to_t_do_not_depend_on_later_bars():
    for kind in SIGNAL_KINDS:
        long = generate_universe(num_symbols=4, num_bars=600, seed=2, signal=kind, signal_strength=0.1)
        short = generate_universe(num_symbols=4, num_bars=250, seed=2, signal=kind, signal_strength=0.1)
        for symbol in short.panel:
            pd.testing.assert_frame_equal(short.panel[symbol], long.panel[symbol].iloc[:250])
            pd.testing.assert_series_equal(short.expected_return[symbol], long.expected_return[symbol].iloc[:250])


def test_the_nonlinear_edge_is_invisible_to_linear_features():
    universe = generate_universe(num_symbols=40, num_bars=10000, seed=3, signal="nonlinear", oracle_ic=0.08)
    oracle = _matrix(universe.expected_return)
    log_returns, forward = _log_returns_and_forward(universe)
    log_volume = np.log(np.column_stack([frame["volume"].to_numpy() for frame in universe.panel.values()]))
    volume_change = np.vstack([np.full(log_volume.shape[1], np.nan), np.diff(log_volume, axis=0)])
    # The oracle is a product of the volume surprise and the last return:
    # each alone (and so any linear mix) says nothing of the forward return.
    for feature in (log_returns, volume_change, np.abs(log_returns)):
        assert abs(_pooled_correlation(feature, forward)) < 0.015
    assert _pooled_correlation(oracle, forward) > 0.06
    assert _pooled_correlation(volume_change * log_returns, forward) < -0.02  # the interaction itself does


def test_the_cross_sectional_edge_is_zero_on_average_across_symbols():
    universe = generate_universe(num_symbols=12, num_bars=800, seed=4, signal="cross_sectional", oracle_ic=0.05)
    oracle = _matrix(universe.expected_return)
    assert np.allclose(oracle.mean(axis=1), 0.0, atol=1e-12)
    assert oracle.std() > 0


@pytest.mark.parametrize("kind", SIGNAL_KINDS)
def test_strength_for_oracle_ic_inverts_the_population_ic(kind):
    for target in (0.02, 0.05, 0.08):
        strength = strength_for_oracle_ic(kind, target, HORIZON, dispersion_share=0.6)
        assert population_oracle_ic(kind, strength, HORIZON, dispersion_share=0.6) == pytest.approx(target, abs=1e-8)
    assert strength_for_oracle_ic(kind, 0.0) == 0.0


def test_ar1_population_ic_matches_the_issue_figure():
    # An AR(1) coefficient of 0.12 in daily returns: oracle IC ~0.05 at a 5-bar horizon.
    assert population_oracle_ic("ar1", 0.12, 5) == pytest.approx(0.0554, abs=5e-4)


@pytest.mark.parametrize("arguments, message", [
    ({"signal": "momentum"}, r"`signal` must be one of \('volume', 'ar1', 'cross_sectional', 'nonlinear'\). "
                             r"Received: signal='momentum'"),
    ({"signal_strength": 0.1, "oracle_ic": 0.05}, "Give `signal_strength` or `oracle_ic`, not both"),
    ({"oracle_ic": -0.01}, "`oracle_ic` must be >= 0. Received: oracle_ic=-0.01"),
    ({"signal": "ar1", "oracle_ic": 0.9}, r"`oracle_ic` must be in \(0, "),
])
def test_bad_signal_arguments_say_what_was_received(arguments, message):
    with pytest.raises(ConfigError, match=message):
        generate_universe(num_symbols=3, num_bars=100, **arguments)
