"""Tests for the seeded synthetic universe and its oracle."""

import numpy as np
import pandas as pd
import pytest

from keras_synapse.data.panel import Panel
from keras_synapse.data.synthetic import generate_universe, oracle_correlation
from keras_synapse.errors import ConfigError

HORIZON = 5


def _log_closes(universe):
    return np.log(np.column_stack([frame["close"].to_numpy() for frame in universe.panel.values()]))


def _forward_and_past_returns(universe, horizon=HORIZON):
    """Realized log returns over bars t+1..t+h and t-h+1..t, NaN where the window leaves the sample."""
    log_close = _log_closes(universe)
    forward = np.full_like(log_close, np.nan)
    forward[:-horizon] = log_close[horizon:] - log_close[:-horizon]
    past = np.full_like(log_close, np.nan)
    past[horizon:] = log_close[horizon:] - log_close[:-horizon]
    return forward, past


def _oracle(universe):
    return np.column_stack([series.to_numpy() for series in universe.expected_return.values()])


def _pooled_correlation(first, second):
    both = np.isfinite(first) & np.isfinite(second)
    return float(np.corrcoef(first[both], second[both])[0, 1])


@pytest.fixture(scope="module")
def signal_universe():
    return generate_universe(num_symbols=12, num_bars=2520, seed=0, signal_strength=0.5, horizon=HORIZON)


@pytest.fixture(scope="module")
def null_universe():
    return generate_universe(num_symbols=12, num_bars=2520, seed=0, signal_strength=0.0, horizon=HORIZON)


def test_same_seed_gives_identical_universe():
    first = generate_universe(num_symbols=4, num_bars=300, seed=11, signal_strength=0.3)
    second = generate_universe(num_symbols=4, num_bars=300, seed=11, signal_strength=0.3)
    assert first.panel.fingerprint() == second.panel.fingerprint()
    for symbol in first.panel:
        pd.testing.assert_series_equal(first.expected_return[symbol], second.expected_return[symbol])
    pd.testing.assert_series_equal(first.regime, second.regime)
    other = generate_universe(num_symbols=4, num_bars=300, seed=12, signal_strength=0.3)
    assert other.panel.fingerprint() != first.panel.fingerprint()


def test_symbols_are_synthetic_names_and_stable_across_universe_sizes():
    small = generate_universe(num_symbols=3, num_bars=200, seed=5)
    large = generate_universe(num_symbols=11, num_bars=200, seed=5)
    assert small.panel.symbols == ("SYN-00", "SYN-01", "SYN-02")
    assert large.panel.symbols[-1] == "SYN-10"
    for symbol in small.panel:
        pd.testing.assert_frame_equal(small.panel[symbol], large.panel[symbol])


def test_bars_up_to_t_do_not_depend_on_later_bars(signal_universe):
    # Generating fewer bars reproduces the first bars exactly: neither the
    # bars nor the oracle at t can have used anything after t.
    short = generate_universe(num_symbols=12, num_bars=700, seed=0, signal_strength=0.5, horizon=HORIZON)
    for symbol in short.panel:
        pd.testing.assert_frame_equal(short.panel[symbol], signal_universe.panel[symbol].iloc[:700])
        pd.testing.assert_series_equal(
            short.expected_return[symbol], signal_universe.expected_return[symbol].iloc[:700]
        )


@pytest.mark.parametrize(
    "arguments",
    [
        {"seed": 0},
        {"seed": 1, "signal_strength": 3.0, "turbulent_volatility_ratio": 4.0},
        {"seed": 2, "num_bars": 1},
        {"seed": 3, "num_bars": 3, "horizon": 10, "signal_strength": 1.0},
        {"seed": 4, "num_sectors": 1, "calm_to_turbulent": 1.0, "turbulent_to_calm": 1.0},
        {"seed": 5, "freq": "h", "start": "2024-03-01 14:30"},
    ],
)
def test_every_generated_panel_passes_validation(arguments):
    universe = generate_universe(num_symbols=5, **{"num_bars": 400, **arguments})
    validated = Panel(dict(universe.panel), validate=True)
    for symbol, frame in universe.panel.items():
        pd.testing.assert_frame_equal(validated[symbol], frame)
        assert str(frame.index.tz) == "UTC"
        # Stronger than validation: exact bracketing, no tolerance.
        assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
        assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
        assert (frame["low"] > 0).all() and (frame["volume"] >= 1).all()


def test_market_factor_makes_all_pairs_positively_correlated(null_universe):
    log_returns = pd.DataFrame(np.diff(_log_closes(null_universe), axis=0), columns=null_universe.panel.symbols)
    correlation = log_returns.corr().to_numpy()
    pairs = ~np.eye(len(correlation), dtype=bool)
    assert correlation[pairs].min() > 0.05
    sectors = np.array([null_universe.sector[symbol] for symbol in null_universe.panel.symbols])
    same_sector = (sectors[:, None] == sectors[None, :]) & pairs
    assert correlation[same_sector].mean() > correlation[pairs & ~same_sector].mean() + 0.05


def test_turbulent_regime_is_more_volatile_and_persistent(null_universe):
    regime = null_universe.regime.to_numpy()
    assert set(np.unique(regime)) == {0, 1}
    assert 0.05 < regime.mean() < 0.45
    # Spells, not coin flips: the regime rarely changes from one bar to the next.
    assert np.mean(regime[1:] != regime[:-1]) < 0.05
    log_returns = np.diff(_log_closes(null_universe), axis=0)
    turbulent = regime[1:] == 1
    ratio = log_returns[turbulent].std() / log_returns[~turbulent].std()
    assert 1.7 < ratio < 2.3  # turbulent_volatility_ratio defaults to 2.0


def test_oracle_is_zero_without_signal(null_universe):
    assert np.all(_oracle(null_universe) == 0.0)


def test_oracle_correlates_with_forward_return_as_the_strength_implies(signal_universe):
    forward, _ = _forward_and_past_returns(signal_universe)
    achieved = _pooled_correlation(_oracle(signal_universe), forward)
    expected = oracle_correlation(0.5, HORIZON)
    assert expected == pytest.approx(0.3066, abs=1e-3)
    # The sampling spread over seeds is ~0.014 for 12 x 2520 bars.
    assert achieved == pytest.approx(expected, abs=0.05)


def test_oracle_is_the_conditional_expectation_of_the_planted_part(signal_universe, null_universe):
    # Same seed, so the two universes differ only by the planted drift.
    planted_log_price = _log_closes(signal_universe) - _log_closes(null_universe)
    planted_forward = planted_log_price[HORIZON:] - planted_log_price[:-HORIZON]
    oracle = _oracle(signal_universe)[:-HORIZON]
    # What the oracle misses comes only from surprises after t: a residual
    # uncorrelated with it, so the regression slope is 1 and the oracle
    # explains 55 of the 85 parts of the planted variance (horizon 5).
    slope = np.sum(oracle * planted_forward) / np.sum(oracle**2)
    assert slope == pytest.approx(1.0, abs=0.03)
    explained = 1 - np.var(planted_forward - oracle) / np.var(planted_forward)
    assert explained == pytest.approx(55 / 85, abs=0.03)


def test_volume_surprise_is_observable_and_predicts_forward_return(signal_universe, null_universe):
    def volume_surprise(universe):
        # The level of log volume per symbol and regime is all a model needs
        # to subtract; what remains is the surprise (scaled).
        log_volume = np.log(np.column_stack([frame["volume"].to_numpy() for frame in universe.panel.values()]))
        turbulent = universe.regime.to_numpy()[:, None] == 1
        surprise = log_volume.copy()
        for mask in (turbulent, ~turbulent):
            mask = np.broadcast_to(mask, log_volume.shape)
            level = np.nanmean(np.where(mask, log_volume, np.nan), axis=0)
            surprise = np.where(mask, log_volume - level, surprise)
        return surprise

    forward, _ = _forward_and_past_returns(signal_universe)
    assert _pooled_correlation(volume_surprise(signal_universe), forward) > 0.12
    null_forward, _ = _forward_and_past_returns(null_universe)
    # One standard error is ~0.006 here.
    assert abs(_pooled_correlation(volume_surprise(null_universe), null_forward)) < 0.03


def test_oracle_is_not_a_function_of_past_returns(signal_universe, null_universe):
    _, past = _forward_and_past_returns(signal_universe)
    # The only link: drifts of surprises t-h+1..t-1 fell partly in the past
    # window too. Its exact size is small, and the data match it.
    achieved = _pooled_correlation(_oracle(signal_universe), past)
    expected = oracle_correlation(0.5, HORIZON, window="past")
    assert expected == pytest.approx(0.1115, abs=1e-3)
    assert achieved == pytest.approx(expected, abs=0.05)
    assert achieved < 0.5 * _pooled_correlation(_oracle(signal_universe), _forward_and_past_returns(signal_universe)[0])


def test_oracle_correlation_grows_with_strength():
    values = [oracle_correlation(strength) for strength in (0.0, 0.1, 0.25, 0.5, 1.0)]
    assert values[0] == 0.0
    assert values == sorted(values)
    assert values[1] == pytest.approx(0.066, abs=1e-3)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"num_symbols": 0}, "`num_symbols` must be >= 1. Received: num_symbols=0"),
        ({"num_bars": 2.5}, "`num_bars` must be an integer. Received: num_bars=2.5"),
        ({"signal_strength": -0.1}, "`signal_strength` must be >= 0. Received: signal_strength=-0.1"),
        ({"horizon": 0}, "`horizon` must be >= 1. Received: horizon=0"),
        ({"turbulent_volatility_ratio": 0.5}, "`turbulent_volatility_ratio` must be >= 1."),
        ({"calm_to_turbulent": 0.0}, r"`calm_to_turbulent` must be a probability in \(0, 1\]."),
        ({"freq": "not-a-frequency"}, "`start` and `freq` must give a date range"),
    ],
)
def test_bad_arguments_say_what_was_received(arguments, message):
    with pytest.raises(ConfigError, match=message):
        generate_universe(**arguments)
