"""Pattern features: closed forms on built series, exact warm-ups, no look-ahead, timing."""

import time

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from conftest import make_bars

from keras_synapse.data.synthetic import generate_universe
from keras_synapse.errors import ConfigError
from keras_synapse.features.pattern import (
    PATTERN_COLUMNS,
    PATTERN_REFERENCES,
    PATTERN_WARMUP,
    SINGLE_ASSET_PATTERN_COLUMNS,
    SINGLE_ASSET_PATTERN_WARMUP,
    pattern_features,
    single_asset_pattern_features,
)

NUM_BARS = 400


def bars_from_log_returns(log_returns, start="2020-01-01", relative_range=0.01, volume=1e6):
    """Bars whose closes follow `log_returns` (first close 100), opening at the previous close."""
    close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))
    open_ = np.concatenate([[100.0], close[:-1]])
    index = pd.date_range(start, periods=len(close), freq="B", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + relative_range),
            "low": np.minimum(open_, close) * (1 - relative_range),
            "close": close,
            "volume": np.broadcast_to(volume, close.shape).astype(np.float64),
        },
        index=index,
    )


def make_references(num_bars=NUM_BARS):
    return {role: make_bars(num_bars, seed=10 + offset) for offset, role in enumerate(PATTERN_REFERENCES)}


# --- Shape and warm-up -------------------------------------------------------


@pytest.mark.parametrize(
    "compute, columns, warmup",
    [
        (lambda bars: pattern_features(bars, make_references()), PATTERN_COLUMNS, PATTERN_WARMUP),
        (single_asset_pattern_features, SINGLE_ASSET_PATTERN_COLUMNS, SINGLE_ASSET_PATTERN_WARMUP),
    ],
    ids=["pattern17", "pattern14"],
)
def test_columns_and_exact_warmup(compute, columns, warmup):
    bars = make_bars(NUM_BARS, seed=1)
    features = compute(bars)
    assert tuple(features.columns) == columns
    assert features.index.equals(bars.index)
    assert (features.dtypes == np.float64).all()
    finite_rows = np.isfinite(features.to_numpy()).all(axis=1)
    # warm-up = index of the first all-finite row + 1, and every later row is finite.
    assert finite_rows.argmax() == warmup - 1
    assert finite_rows[warmup - 1 :].all()


def test_the_seed_groups_have_17_and_14_features():
    assert len(PATTERN_COLUMNS) == 17 and len(set(PATTERN_COLUMNS)) == 17
    assert len(SINGLE_ASSET_PATTERN_COLUMNS) == 14
    assert set(PATTERN_COLUMNS) - set(SINGLE_ASSET_PATTERN_COLUMNS) == {
        "sector_relative_strength_20",
        "market_beta_instability_20_60",
        "vix_term_structure",
    }


def test_a_missing_reference_is_named():
    references = make_references()
    del references["vix3m"]
    with pytest.raises(ConfigError, match=r"missing: \['vix3m'\]"):
        pattern_features(make_bars(NUM_BARS), references)


# --- No look-ahead -----------------------------------------------------------


@pytest.mark.parametrize("feature_set", ["pattern17", "pattern14"])
@pytest.mark.parametrize("seed", [0, 1])
def test_truncated_bars_and_references_give_the_same_past_values(feature_set, seed):
    bars = make_bars(NUM_BARS, seed=seed)
    references = make_references()

    def compute(bars, references):
        if feature_set == "pattern17":
            return pattern_features(bars, references)
        return single_asset_pattern_features(bars)

    full = compute(bars, references)
    for cut in (30, 80, 251, 252, 253, 320, NUM_BARS - 1):
        cut_time = bars.index[cut]
        truncated = compute(
            bars.iloc[: cut + 1],
            {role: reference.loc[:cut_time] for role, reference in references.items()},
        )
        np.testing.assert_allclose(
            truncated.to_numpy(), full.iloc[: cut + 1].to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True
        )


def test_future_reference_bars_do_not_change_past_values():
    bars = make_bars(NUM_BARS, seed=3)
    longer = {role: make_bars(NUM_BARS + 100, seed=10 + offset) for offset, role in enumerate(PATTERN_REFERENCES)}
    exact = {role: reference.iloc[:NUM_BARS] for role, reference in longer.items()}
    np.testing.assert_array_equal(pattern_features(bars, longer).to_numpy(), pattern_features(bars, exact).to_numpy())


def test_references_align_on_the_last_bar_at_or_before_each_timestamp():
    bars = make_bars(NUM_BARS, seed=4)
    references = make_references()
    vix = references["vix"]
    # A reference missing a day repeats its previous close there.
    references["vix"] = vix.drop(vix.index[100])
    expected = np.log(references["vix3m"]["close"].to_numpy() / vix["close"].to_numpy())
    expected[100] = np.log(references["vix3m"]["close"].iloc[100] / vix["close"].iloc[99])
    # A reference stamped an hour after the symbol's bar is not yet known then:
    # each row sees the previous day's value (and the first row none).
    later = references["vix3m"].set_axis(references["vix3m"].index + pd.Timedelta(hours=1))
    features = pattern_features(bars, references)
    np.testing.assert_allclose(features["vix_term_structure"].to_numpy(), expected, rtol=1e-12)
    shifted = pattern_features(bars, {**references, "vix3m": later})["vix_term_structure"]
    assert np.isnan(shifted.iloc[0])
    aligned_vix = vix["close"].to_numpy().copy()
    aligned_vix[100] = aligned_vix[99]
    np.testing.assert_allclose(
        shifted.iloc[1:].to_numpy(),
        np.log(references["vix3m"]["close"].to_numpy()[:-1] / aligned_vix[1:]),
        rtol=1e-12,
    )


# --- Closed forms: non-linear price --------------------------------------------


def test_price_acceleration_of_a_log_quadratic_price():
    # lc_t = a t^2 has second difference a (5)^2 * 2 at a 5-bar step.
    curvature = 1e-5
    steps = np.arange(1, NUM_BARS)
    features = single_asset_pattern_features(bars_from_log_returns(curvature * (2 * steps - 1)))
    np.testing.assert_allclose(features["price_acceleration_5"].iloc[10:], 50 * curvature, rtol=1e-6)


def test_volume_price_divergence_signs():
    log_returns = np.random.default_rng(0).normal(0, 0.01, NUM_BARS - 1)
    bars = bars_from_log_returns(log_returns)
    # Volume rising exactly with price: perfectly confirming, divergence -1.
    confirming = bars.assign(volume=1e6 * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)])))
    diverging = bars.assign(volume=1e6 * np.exp(-np.concatenate([[0.0], np.cumsum(log_returns)])))
    np.testing.assert_allclose(
        single_asset_pattern_features(confirming)["volume_price_divergence_20"].iloc[20:], -1, atol=1e-6
    )
    np.testing.assert_allclose(
        single_asset_pattern_features(diverging)["volume_price_divergence_20"].iloc[20:], 1, atol=1e-6
    )
    # Constant volume carries no information: 0, not NaN.
    assert (single_asset_pattern_features(bars)["volume_price_divergence_20"].iloc[20:] == 0).all()


def test_volatility_regime_change_when_volatility_doubles():
    # Returns alternate +-sigma, then +-2 sigma from bar `change`: every
    # even-length window has mean 0 and std = size * sqrt(n / (n - 1)).
    sigma, change = 0.01, 200
    signs = np.where(np.arange(1, NUM_BARS) % 2 == 0, 1.0, -1.0)
    sizes = np.where(np.arange(1, NUM_BARS) >= change, 2 * sigma, sigma)
    feature = single_asset_pattern_features(bars_from_log_returns(signs * sizes))["volatility_regime_change_10_60"]
    steady = 0.5 * np.log((10 / 9) / (60 / 59))
    np.testing.assert_allclose(feature.iloc[60:change], steady, atol=1e-9)
    # Ten bars in: the short window is all new, the long one 10 new and 50 old
    # (sum of squares 10 * 4 + 50 = 90 sigma^2 over 59).
    np.testing.assert_allclose(feature.iloc[change + 9], np.log(2 * np.sqrt(10 / 9) / np.sqrt(90 / 59)), atol=1e-9)
    np.testing.assert_allclose(feature.iloc[change + 59 :], steady, atol=1e-9)


def test_return_skewness_of_a_two_point_distribution():
    # A jump every 5th bar: a two-point distribution with p = 1/5, population
    # skewness (1 - 2p) / sqrt(p (1 - p)) = 1.5, times the 20-sample
    # correction sqrt(n (n - 1)) / (n - 2).
    log_returns = np.where(np.arange(1, NUM_BARS) % 5 == 0, 0.05, 0.0)
    feature = single_asset_pattern_features(bars_from_log_returns(log_returns))["return_skewness_20"]
    np.testing.assert_allclose(feature.iloc[20:], 1.5 * np.sqrt(20 * 19) / 18, rtol=1e-6)


def test_return_skewness_matches_scipy_and_follows_the_distribution():
    generator = np.random.default_rng(0)
    # Exponential returns have skewness 2; negated, -2.
    log_returns = 0.01 * (generator.exponential(size=4000) - 1)
    skewness = single_asset_pattern_features(bars_from_log_returns(log_returns))["return_skewness_20"]
    for position in (20, 500, 3999):
        window = np.diff(np.log(bars_from_log_returns(log_returns)["close"].to_numpy()))[position - 20 : position]
        np.testing.assert_allclose(skewness.iloc[position], scipy.stats.skew(window, bias=False), rtol=1e-6)
    # 20 samples understate a skewness of 2, but clearly keep its sign.
    assert 1.0 < skewness.iloc[20:].mean() < 2.0
    negated = single_asset_pattern_features(bars_from_log_returns(-log_returns))["return_skewness_20"]
    np.testing.assert_allclose(negated.iloc[20:], -skewness.iloc[20:], rtol=1e-6, atol=1e-9)


# --- Closed forms: temporal dependencies ---------------------------------------


def test_momentum_persistence_counts_returns_with_the_trend_sign():
    # Up, up, up, down, up, up, up repeating: every 7-bar window holds six
    # up moves and one down, and the 7-bar return is up.
    pattern = np.array([1, 1, 1, -1, 1, 1, 1]) * 0.01
    feature = single_asset_pattern_features(bars_from_log_returns(np.tile(pattern, 60)))["momentum_persistence_7"]
    np.testing.assert_allclose(feature.iloc[7:], 6 / 7)
    falling = single_asset_pattern_features(bars_from_log_returns(-np.tile(pattern, 60)))["momentum_persistence_7"]
    np.testing.assert_allclose(falling.iloc[7:], 6 / 7)


def test_volatility_clustering_of_clustered_and_alternating_magnitudes():
    # |r| alternating small/large: lag-1 autocorrelation of |r| is exactly -1.
    magnitudes = np.where(np.arange(1, NUM_BARS) % 2 == 0, 0.02, 0.005)
    signs = np.random.default_rng(1).choice([-1.0, 1.0], NUM_BARS - 1)
    feature = single_asset_pattern_features(bars_from_log_returns(signs * magnitudes))["volatility_clustering_60"]
    np.testing.assert_allclose(feature.iloc[61:], -1, atol=1e-9)
    # Long blocks of equal magnitude: strongly positive.
    blocks = np.where((np.arange(1, NUM_BARS) // 20) % 2 == 0, 0.02, 0.005)
    clustered = single_asset_pattern_features(bars_from_log_returns(signs * blocks))["volatility_clustering_60"]
    assert (clustered.iloc[61:] > 0.8).all()


def test_trend_exhaustion_in_volatility_units():
    # Alternating +-sigma returns: the close alternates between two levels, so
    # it sits half a step (sigma / 2) from its 20-bar mean, and
    # std_20(r) = sigma * sqrt(20 / 19).
    sigma = 0.01
    signs = np.where(np.arange(1, NUM_BARS) % 2 == 1, 1.0, -1.0)
    feature = single_asset_pattern_features(bars_from_log_returns(signs * sigma))["trend_exhaustion_20"]
    expected = np.where(np.arange(NUM_BARS) % 2 == 1, 0.5, -0.5) / np.sqrt(20 / 19)
    np.testing.assert_allclose(feature.iloc[20:], expected[20:], rtol=1e-6)


def test_garch_ratio_compares_the_forecast_with_realized_volatility():
    from keras_synapse.features.garch import garch_volatility_forecast

    bars = make_bars(NUM_BARS, seed=5)
    realized = np.log(bars["close"]).diff().rolling(20).std()
    expected = np.log(garch_volatility_forecast(bars) / realized)
    feature = single_asset_pattern_features(bars)["garch_volatility_ratio_20"]
    np.testing.assert_allclose(feature.to_numpy(), expected.to_numpy(), rtol=1e-12, equal_nan=True)


# --- Closed forms: market microstructure ---------------------------------------


def test_range_expansion_against_the_previous_20_bars():
    # Flat closes at 100 with a 1% range (high 101, low 99); bar 100 spans 2%.
    bars = bars_from_log_returns(np.zeros(NUM_BARS - 1))
    bars.loc[bars.index[100], ["high", "low"]] = [102.0, 98.0]
    normal, wide = np.log(101 / 99), np.log(102 / 98)
    feature = single_asset_pattern_features(bars)["range_expansion_20"]
    np.testing.assert_allclose(feature.iloc[20:100], 0.0, atol=1e-12)
    # Today's range is compared with the 20 bars before it, not including it.
    np.testing.assert_allclose(feature.iloc[100], np.log(wide / normal), rtol=1e-12)
    np.testing.assert_allclose(feature.iloc[101], np.log(normal / ((19 * normal + wide) / 20)), rtol=1e-12)


def test_overnight_gap_known_value():
    bars = bars_from_log_returns(np.zeros(NUM_BARS - 1))
    bars.loc[bars.index[50], "open"] = 102.0
    bars.loc[bars.index[50], "high"] = 103.0
    feature = single_asset_pattern_features(bars)["overnight_gap"]
    np.testing.assert_allclose(feature.iloc[50], np.log(1.02), rtol=1e-12)
    assert feature.iloc[51] == 0.0


def test_end_of_day_momentum_is_the_close_location_in_the_range():
    bars = make_bars(30, seed=6)
    high, low = bars["high"].copy(), bars["low"].copy()
    bars.loc[bars.index[5], "close"] = high.iloc[5]
    bars.loc[bars.index[6], "close"] = low.iloc[6]
    bars.loc[bars.index[7], "close"] = (high.iloc[7] + low.iloc[7]) / 2
    flat = bars.index[8]
    bars.loc[flat, ["open", "high", "low", "close"]] = 100.0
    feature = single_asset_pattern_features(bars)["end_of_day_momentum"]
    assert feature.iloc[5] == 1.0 and feature.iloc[6] == -1.0 and feature.iloc[8] == 0.0
    np.testing.assert_allclose(feature.iloc[7], 0.0, atol=1e-12)
    assert feature.between(-1, 1).all()


# --- Closed forms: cross-asset --------------------------------------------------


def test_sector_relative_strength():
    bars = make_bars(NUM_BARS, seed=7)
    references = make_references()
    references["sector"] = bars
    np.testing.assert_array_equal(pattern_features(bars, references)["sector_relative_strength_20"].iloc[20:], 0.0)
    # A sector drifting 0.1% per bar faster: -2% over 20 bars.
    references["sector"] = bars.assign(close=bars["close"] * np.exp(0.001 * np.arange(NUM_BARS)))
    np.testing.assert_allclose(
        pattern_features(bars, references)["sector_relative_strength_20"].iloc[20:], -0.02, rtol=1e-9
    )


def test_market_beta_instability():
    references = make_references()
    market = references["market"]
    market_returns = np.diff(np.log(market["close"].to_numpy()))
    noise = np.random.default_rng(8).normal(0, 0.001, NUM_BARS - 1)

    def instability(log_returns):
        symbol = bars_from_log_returns(log_returns).set_axis(market.index)
        return pattern_features(symbol, references)["market_beta_instability_20_60"].iloc[79:]

    # Exactly twice the market: beta is 2 in every window, instability 0.
    np.testing.assert_allclose(instability(2 * market_returns), 0.0, atol=1e-9)
    # Twice the market plus small noise: the beta estimate barely moves.
    assert instability(2 * market_returns + noise).max() < 0.06
    # A beta switching between 1 and 3 every 40 bars wanders widely.
    beta = np.where((np.arange(NUM_BARS - 1) // 40) % 2 == 0, 1.0, 3.0)
    assert instability(beta * market_returns + noise).min() > 0.3


def test_vix_term_structure_is_the_log_ratio():
    references = make_references()
    feature = pattern_features(make_bars(NUM_BARS), references)["vix_term_structure"]
    expected = np.log(references["vix3m"]["close"] / references["vix"]["close"])
    np.testing.assert_allclose(feature.to_numpy(), expected.to_numpy(), rtol=1e-14)


# --- Closed forms: core context ------------------------------------------------


def test_multi_timeframe_return_of_a_constant_drift():
    drift = 0.001
    feature = single_asset_pattern_features(bars_from_log_returns(np.full(NUM_BARS - 1, drift)))
    expected = drift * (np.sqrt(5) + np.sqrt(20) + np.sqrt(60)) / 3
    np.testing.assert_allclose(feature["multi_timeframe_return"].iloc[60:], expected, rtol=1e-9)


def test_price_range_position():
    rising = single_asset_pattern_features(bars_from_log_returns(np.full(NUM_BARS - 1, 0.001)))
    falling = single_asset_pattern_features(bars_from_log_returns(np.full(NUM_BARS - 1, -0.001)))
    np.testing.assert_allclose(rising["price_range_position_252"].iloc[251:], 1.0)
    np.testing.assert_allclose(falling["price_range_position_252"].iloc[251:], 0.0, atol=1e-12)
    flat = single_asset_pattern_features(bars_from_log_returns(np.zeros(NUM_BARS - 1)))
    assert (flat["price_range_position_252"].iloc[251:] == 0.5).all()


def test_a_halted_symbol_stays_finite():
    # Unchanged closes and high == low for 30 bars in the middle of the series.
    bars = make_bars(NUM_BARS, seed=9)
    halted = bars.index[300:330]
    bars.loc[halted, ["open", "high", "low", "close"]] = bars["close"].iloc[299]
    features = single_asset_pattern_features(bars)
    assert np.isfinite(features.iloc[SINGLE_ASSET_PATTERN_WARMUP - 1 :].to_numpy()).all()


# --- Timing ------------------------------------------------------------------------


def test_34_symbols_of_5040_bars_are_finite_after_the_warmup():
    panel = generate_universe(num_symbols=34, num_bars=5040, seed=0).panel
    symbols = list(panel)
    references = {role: panel[symbol] for role, symbol in zip(PATTERN_REFERENCES, symbols[:4])}
    start = time.perf_counter()
    features = {symbol: pattern_features(panel[symbol], references) for symbol in symbols}
    elapsed = time.perf_counter() - start
    print(f"pattern_features: 34 symbols x 5040 bars in {elapsed:.2f} s")
    # The time is printed, not asserted: `python -m keras_synapse.bench features` measures speed.
    assert all(np.isfinite(frame.iloc[PATTERN_WARMUP - 1 :].to_numpy()).all() for frame in features.values())
