"""Multi-timeframe features: hand-computed cases, exact warm-up, no look-ahead."""

import math

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.features.multiscale import MULTISCALE_WARMUP, MULTISCALE_WINDOWS, multiscale_features


def bars_from_closes(closes, volumes=None):
    closes = np.asarray(closes, dtype="float64")
    volumes = np.full_like(closes, 1000.0) if volumes is None else np.asarray(volumes, dtype="float64")
    index = pd.date_range("2024-01-01", periods=len(closes), freq="B", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": closes, "high": closes, "low": closes, "close": closes, "volume": volumes}, index=index
    )


def test_columns_and_dtype():
    bars = make_bars(300)
    features = multiscale_features(bars)
    kinds = ["log_return", "realized_volatility", "volume_zscore", "log_range"]
    assert list(features.columns) == [f"{kind}_{window}" for window in MULTISCALE_WINDOWS for kind in kinds]
    assert len(features.columns) == 28
    assert (features.dtypes == "float64").all()
    assert features.index.equals(bars.index)


def test_log_return_is_the_log_ratio_to_the_close_w_bars_back():
    closes = np.arange(1.0, 301.0)
    features = multiscale_features(bars_from_closes(closes))
    assert features["log_return_4"].iloc[10] == pytest.approx(math.log(11 / 7), rel=1e-12)
    assert features["log_return_256"].iloc[299] == pytest.approx(math.log(300 / 44), rel=1e-12)
    assert features["log_return_4"].iloc[:4].isna().all()


def test_realized_volatility_of_alternating_returns():
    # Returns +r, -r, ...: every even window has mean 0 and sum of squares
    # w r^2, so the ddof-1 standard deviation is r * sqrt(w / (w - 1)).
    r = 0.01
    returns = np.array([0.0] + [r, -r] * 150)
    features = multiscale_features(bars_from_closes(100 * np.exp(np.cumsum(returns))))
    for window in MULTISCALE_WINDOWS:
        np.testing.assert_allclose(
            features[f"realized_volatility_{window}"].iloc[window:], r * math.sqrt(window / (window - 1)), rtol=1e-9
        )


def test_realized_volatility_matches_numpy():
    bars = make_bars(400, seed=3)
    returns = np.diff(np.log(bars["close"].to_numpy()))
    features = multiscale_features(bars)
    for window in MULTISCALE_WINDOWS:
        t = 350
        expected = np.std(returns[t - window : t], ddof=1)  # returns[t - 1] is the return into bar t
        assert features[f"realized_volatility_{window}"].iloc[t] == pytest.approx(expected, rel=1e-9)


def test_log_range_is_the_highest_high_over_the_lowest_low():
    bars = make_bars(300, seed=2)
    features = multiscale_features(bars)
    t = 280
    for window in MULTISCALE_WINDOWS:
        highest = bars["high"].iloc[t - window + 1 : t + 1].max()
        lowest = bars["low"].iloc[t - window + 1 : t + 1].min()
        assert features[f"log_range_{window}"].iloc[t] == pytest.approx(math.log(highest / lowest), rel=1e-12)


def test_volume_zscore_by_hand_and_zero_for_constant_volume():
    # log(1 + volume) = 0, 1, 2, 3: z = (3 - 1.5) / std([0, 1, 2, 3], ddof=1).
    volumes = np.expm1(np.arange(4.0))
    features = multiscale_features(bars_from_closes(np.full(4, 10.0), volumes=volumes))
    assert features["volume_zscore_4"].iloc[3] == pytest.approx(1.5 / np.std([0, 1, 2, 3], ddof=1), rel=1e-12)
    flat = multiscale_features(bars_from_closes(np.linspace(10, 20, 300), volumes=np.zeros(300)))
    assert (flat.filter(like="volume_zscore").iloc[MULTISCALE_WARMUP - 1 :] == 0).all().all()


@pytest.mark.parametrize("seed", [0, 1])
def test_warmup_is_exact(seed):
    values = multiscale_features(make_bars(800, seed=seed)).to_numpy()
    assert MULTISCALE_WARMUP == 257
    assert np.isfinite(values[MULTISCALE_WARMUP - 1 :]).all()
    assert np.isnan(values[MULTISCALE_WARMUP - 2]).any()


def test_features_do_not_depend_on_price_units():
    bars = make_bars(400, seed=6)
    scaled = bars.assign(**{name: bars[name] * 1e-6 for name in ("open", "high", "low", "close")})
    np.testing.assert_allclose(
        multiscale_features(scaled).to_numpy(), multiscale_features(bars).to_numpy(), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiscale_features_use_past_bars_only(seed):
    bars = make_bars(420, seed=seed)
    full = multiscale_features(bars)
    for cut in range(2, 420, 11):
        truncated = multiscale_features(bars.iloc[: cut + 1])
        assert truncated.index.equals(full.index[: cut + 1])
        # Bit-identical: pandas' rolling windows run forward from the first bar.
        np.testing.assert_array_equal(truncated.to_numpy(), full.to_numpy()[: cut + 1], err_msg=f"cut={cut}")
