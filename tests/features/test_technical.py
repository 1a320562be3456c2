"""Technical features: TA-Lib's values, hand-computed cases, exact warm-up, no look-ahead."""

import math
import time

import numpy as np
import pandas as pd
import pytest
import talib
from conftest import make_bars

from keras_synapse.data.synthetic import generate_universe
from keras_synapse.errors import ConfigError, DataError
from keras_synapse.features.multiscale import multiscale_features
from keras_synapse.features.raw_ohlcv import raw_ohlcv_features
from keras_synapse.features.technical import (
    SESSION_VWAP_WARMUP,
    TECHNICAL_WARMUP,
    session_vwap_distance,
    technical_features,
)

EXPECTED_COLUMNS = [
    "rsi_14",
    "macd_to_close",
    "macd_signal_to_close",
    "macd_histogram_to_close",
    "bollinger_percent_b_20",
    "bollinger_bandwidth_20",
    "natr_14",
    "vwap_distance_20",
    "obv_change_20",
    "stochastic_k_14",
    "stochastic_d_14",
    "adx_14",
    "plus_di_14",
    "minus_di_14",
    "cci_20",
    "williams_r_14",
    "mfi_14",
    "roc_10",
    "close_to_sma_50",
    "close_to_sma_200",
]


def bars_from_closes(closes, volumes=None, start="2024-01-01", freq="B"):
    """Bars whose open, high, low and close are all `closes` (typical price = close)."""
    closes = np.asarray(closes, dtype="float64")
    volumes = np.ones_like(closes) if volumes is None else np.asarray(volumes, dtype="float64")
    index = pd.date_range(start, periods=len(closes), freq=freq, tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": closes, "high": closes, "low": closes, "close": closes, "volume": volumes}, index=index
    )


def assert_past_bars_only(compute, bars, cut_points):
    """Values from bars truncated at each cut equal the full computation at every row <= cut, bit for bit."""
    full = compute(bars)
    for cut in cut_points:
        truncated = compute(bars.iloc[: cut + 1])
        assert truncated.index.equals(full.index[: cut + 1])
        np.testing.assert_array_equal(truncated.to_numpy(), full.to_numpy()[: cut + 1], err_msg=f"cut={cut}")


# --- against TA-Lib called directly ------------------------------------------


def test_columns_and_dtype():
    features = technical_features(make_bars(300))
    assert list(features.columns) == EXPECTED_COLUMNS
    assert (features.dtypes == "float64").all()
    assert features.index.equals(make_bars(300).index)


def test_values_match_talib_on_the_same_arrays():
    bars = make_bars(400, seed=4)
    high, low, close, volume = (bars[name].to_numpy() for name in ("high", "low", "close", "volume"))
    features = technical_features(bars)

    def check(column, expected):
        np.testing.assert_allclose(features[column].to_numpy(), expected, rtol=1e-12, atol=1e-15, equal_nan=True)

    check("rsi_14", talib.RSI(close, 14))
    macd, signal, histogram = talib.MACD(close, 12, 26, 9)
    check("macd_to_close", macd / close)
    check("macd_signal_to_close", signal / close)
    check("macd_histogram_to_close", histogram / close)
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0, 0)
    check("bollinger_percent_b_20", (close - lower) / (upper - lower))
    check("bollinger_bandwidth_20", (upper - lower) / middle)
    check("natr_14", 100 * talib.ATR(high, low, close, 14) / close)
    on_balance_volume = talib.OBV(close, volume)
    obv_change = np.full_like(close, np.nan)
    obv_change[20:] = (on_balance_volume[20:] - on_balance_volume[:-20]) / talib.SUM(volume, 20)[20:]
    check("obv_change_20", obv_change)
    slow_k, slow_d = talib.STOCH(high, low, close, 14, 3, 0, 3, 0)
    check("stochastic_k_14", slow_k)
    check("stochastic_d_14", slow_d)
    check("adx_14", talib.ADX(high, low, close, 14))
    check("plus_di_14", talib.PLUS_DI(high, low, close, 14))
    check("minus_di_14", talib.MINUS_DI(high, low, close, 14))
    check("cci_20", talib.CCI(high, low, close, 20))
    check("williams_r_14", talib.WILLR(high, low, close, 14))
    check("mfi_14", talib.MFI(high, low, close, volume, 14))
    check("roc_10", talib.ROC(close, 10))
    check("close_to_sma_50", np.log(close / talib.SMA(close, 50)))
    check("close_to_sma_200", np.log(close / talib.SMA(close, 200)))


def test_rolling_vwap_matches_a_pandas_computation():
    bars = make_bars(300, seed=5)
    typical = (bars["high"] + bars["low"] + bars["close"]) / 3
    vwap = (typical * bars["volume"]).rolling(20).sum() / bars["volume"].rolling(20).sum()
    np.testing.assert_allclose(
        technical_features(bars)["vwap_distance_20"], np.log(bars["close"] / vwap), rtol=1e-9, atol=1e-12
    )


# --- hand-computed cases -------------------------------------------------------


def test_rsi_is_100_on_a_rising_series_and_0_on_a_falling_one():
    rising = technical_features(bars_from_closes(np.arange(1.0, 61.0)))["rsi_14"]
    falling = technical_features(bars_from_closes(np.arange(60.0, 0.0, -1.0)))["rsi_14"]
    assert (rising.iloc[14:] == 100).all()
    assert (falling.iloc[14:] == 0).all()
    assert rising.iloc[:14].isna().all()


def test_percent_b_of_a_jump_after_a_flat_window():
    # 19 closes at a then one at b: mean a + (b - a) / 20, population std
    # (b - a) * sqrt(19) / 20, so %B = 1/2 + sqrt(19)/4 and the bandwidth is
    # 4 std / mean, whatever a and b (b > a).
    a, b = 100.0, 103.0
    features = technical_features(bars_from_closes([a] * 19 + [b])).iloc[-1]
    mean, std = a + (b - a) / 20, (b - a) * math.sqrt(19) / 20
    assert features["bollinger_percent_b_20"] == pytest.approx(0.5 + math.sqrt(19) / 4, rel=1e-9)
    assert features["bollinger_bandwidth_20"] == pytest.approx(4 * std / mean, rel=1e-9)


def test_percent_b_is_one_at_the_upper_band_and_half_at_the_middle():
    # With the last close c and the other 19 closes fixed, c sits exactly on
    # the upper band when (c - m)^2 = 4 var: solve that quadratic in c.
    others = 100 + np.array([1.0, -1.0] * 9 + [0.0])
    for target, solve_for in [(1.0, "upper"), (0.5, "middle")]:
        if solve_for == "middle":
            last = others.mean()
        else:
            # m = (S + c) / 20, var = (Q + c^2) / 20 - m^2, with S, Q the sums of others.
            total, squares = others.sum(), (others**2).sum()
            coefficients = [
                (19 / 20) ** 2 - 4 * (1 / 20 - 1 / 400),
                -2 * (19 / 20) * total / 20 + 8 * total / 400,
                (total / 20) ** 2 - 4 * (squares / 20 - total**2 / 400),
            ]
            last = max(np.roots(coefficients).real)
        features = technical_features(bars_from_closes(np.append(others, last))).iloc[-1]
        assert features["bollinger_percent_b_20"] == pytest.approx(target, abs=1e-9)


def test_flat_prices_are_neutral_not_extreme():
    features = technical_features(bars_from_closes(np.full(210, 50.0), volumes=np.zeros(210))).iloc[-1]
    assert features["bollinger_percent_b_20"] == 0.5
    assert features["bollinger_bandwidth_20"] == 0
    assert features["vwap_distance_20"] == 0
    assert features["obv_change_20"] == 0
    assert features["mfi_14"] == 50
    assert features["close_to_sma_200"] == 0


def test_rolling_vwap_of_a_constant_price_is_that_price():
    rng = np.random.default_rng(0)
    features = technical_features(bars_from_closes(np.full(40, 7.0), volumes=rng.uniform(1, 9, 40)))
    # Zero up to the rounding of sum(price * volume) / sum(volume).
    np.testing.assert_allclose(features["vwap_distance_20"].iloc[19:], 0.0, atol=1e-14)


def test_rolling_vwap_weights_by_volume():
    # 19 bars at 100 with volume 1, then one at 121 with volume 19:
    # VWAP = (19 * 100 + 19 * 121) / 38 = 110.5.
    bars = bars_from_closes([100.0] * 19 + [121.0], volumes=[1.0] * 19 + [19.0])
    assert technical_features(bars)["vwap_distance_20"].iloc[-1] == pytest.approx(math.log(121 / 110.5), rel=1e-12)


def test_rolling_vwap_without_volume_is_the_plain_mean():
    closes = np.arange(1.0, 21.0)
    bars = bars_from_closes(closes, volumes=np.zeros(20))
    assert technical_features(bars)["vwap_distance_20"].iloc[-1] == pytest.approx(math.log(20 / 10.5), rel=1e-12)


def test_obv_change_is_the_signed_volume_fraction():
    # Over the last 20 bars: 15 up-closes with volume 2, 5 down-closes with volume 4.
    closes = 100 + np.cumsum([0.0] + [1.0] * 15 + [-1.0] * 5)
    volumes = [9.0] + [2.0] * 15 + [4.0] * 5
    features = technical_features(bars_from_closes(closes, volumes=volumes))
    assert features["obv_change_20"].iloc[20] == pytest.approx((30 - 20) / 50, rel=1e-12)


def test_natr_is_atr_over_close_in_percent():
    # Each bar ranges 2 around a constant close: true range 2, ATR 2, NATR 2%.
    closes = np.full(40, 100.0)
    bars = bars_from_closes(closes).assign(high=101.0, low=99.0)
    assert technical_features(bars)["natr_14"].iloc[14:].to_numpy() == pytest.approx(2.0, rel=1e-12)


# --- session VWAP --------------------------------------------------------------


def two_day_minute_bars():
    """Three minutes after the 09:30 New York open on 2024-03-04, two on 2024-03-05."""
    index = pd.DatetimeIndex(
        [
            "2024-03-04 14:30",
            "2024-03-04 14:31",
            "2024-03-04 14:32",
            "2024-03-05 14:30",
            "2024-03-05 14:31",
        ],
        tz="UTC",
        name="timestamp",
    )
    closes = np.array([10.0, 12.0, 11.0, 20.0, 22.0])
    volumes = np.array([1.0, 3.0, 2.0, 2.0, 2.0])
    return pd.DataFrame(
        {"open": closes, "high": closes, "low": closes, "close": closes, "volume": volumes}, index=index
    )


def test_session_vwap_accumulates_within_a_day_and_resets_at_the_next():
    distance = session_vwap_distance(two_day_minute_bars())
    assert list(distance.columns) == ["session_vwap_distance"]
    expected_vwap = [10.0, 46 / 4, 68 / 6, 20.0, 21.0]  # without a reset the 4th would be 108 / 8
    expected = np.log(np.array([10.0, 12.0, 11.0, 20.0, 22.0]) / expected_vwap)
    np.testing.assert_allclose(distance["session_vwap_distance"], expected, rtol=1e-12, atol=1e-15)
    assert distance["session_vwap_distance"].iloc[3] == 0


def test_session_vwap_uses_the_days_of_the_session_time_zone():
    # 23:30 and 00:30 UTC are one New York evening but two UTC days.
    bars = two_day_minute_bars().iloc[:2]
    bars.index = pd.DatetimeIndex(["2024-03-04 23:30", "2024-03-05 00:30"], tz="UTC", name="timestamp")
    new_york = session_vwap_distance(bars)["session_vwap_distance"]
    utc = session_vwap_distance(bars, session_tz="UTC")["session_vwap_distance"]
    assert new_york.iloc[1] == pytest.approx(math.log(12 / 11.5))
    assert utc.iloc[1] == 0


def test_session_vwap_takes_naive_timestamps_as_utc():
    bars = two_day_minute_bars()
    naive = bars.set_axis(bars.index.tz_localize(None))
    np.testing.assert_array_equal(session_vwap_distance(naive).to_numpy(), session_vwap_distance(bars).to_numpy())


def test_session_vwap_on_daily_bars_is_the_close_against_the_typical_price():
    bars = make_bars(30)
    typical = (bars["high"] + bars["low"] + bars["close"]) / 3
    np.testing.assert_allclose(
        session_vwap_distance(bars)["session_vwap_distance"], np.log(bars["close"] / typical), atol=1e-15
    )


def test_session_vwap_rejects_a_bad_time_zone_and_a_non_time_index():
    with pytest.raises(ConfigError, match="Received: session_tz='Mars/Olympus_Mons'"):
        session_vwap_distance(two_day_minute_bars(), session_tz="Mars/Olympus_Mons")
    with pytest.raises(DataError, match="Received: RangeIndex"):
        session_vwap_distance(two_day_minute_bars().reset_index(drop=True))


# --- warm-up, scale, no look-ahead ----------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_warmup_is_exact(seed):
    values = technical_features(make_bars(1000, seed=seed)).to_numpy()
    assert np.isfinite(values[TECHNICAL_WARMUP - 1 :]).all()
    assert np.isnan(values[TECHNICAL_WARMUP - 2]).any()
    intraday = session_vwap_distance(make_bars(500, seed=seed, freq="7min")).to_numpy()
    assert np.isfinite(intraday[SESSION_VWAP_WARMUP - 1 :]).all()


def test_features_do_not_depend_on_price_or_volume_units():
    bars = make_bars(400, seed=6)
    reference = technical_features(bars).to_numpy()
    for price_scale, volume_scale in [(1e-6, 1.0), (1e6, 1e-3), (3.7, 1e3)]:
        scaled = bars.assign(
            **{name: bars[name] * price_scale for name in ("open", "high", "low", "close")},
            volume=bars["volume"] * volume_scale,
        )
        np.testing.assert_allclose(technical_features(scaled).to_numpy(), reference, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_technical_features_use_past_bars_only(seed):
    # Bit-identical, not just close: TA-Lib runs forward from the first bar.
    assert_past_bars_only(technical_features, make_bars(420, seed=seed), cut_points=range(3, 420, 11))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_session_vwap_uses_past_bars_only(seed):
    # 7-minute bars from 02:00 UTC cross several New York midnights.
    bars = make_bars(600, seed=seed, start="2024-03-04 02:00", freq="7min")
    assert_past_bars_only(session_vwap_distance, bars, cut_points=range(0, 600, 13))


def test_exponential_indicators_depend_on_the_start_but_forget_it():
    # Truncating the end changes nothing (above); dropping the first bar
    # reseeds Wilder/EMA smoothing, which then decays geometrically.
    bars = make_bars(1000, seed=7)
    full = technical_features(bars)
    later_start = technical_features(bars.iloc[1:])
    difference = (later_start - full.iloc[1:]).abs()
    seeded = ["rsi_14", "macd_to_close", "natr_14", "adx_14", "plus_di_14", "minus_di_14"]
    assert (difference[seeded].iloc[TECHNICAL_WARMUP] > 1e-9).any()
    assert (difference.iloc[600:].max() < 1e-9).all()


def test_all_feature_sets_are_fast_on_34_symbols_by_5040_bars():
    panel = generate_universe(num_symbols=34, num_bars=5040, seed=0).panel
    timings = {}
    for compute in (technical_features, multiscale_features, raw_ohlcv_features):
        started = time.perf_counter()
        for _, bars in panel.items():
            compute(bars)
        timings[compute.__name__] = time.perf_counter() - started
    print(
        "34 symbols x 5040 bars: "
        + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in timings.items())
        + f", total {sum(timings.values()):.3f} s"
    )
