"""Raw OHLCV features: hand-computed cases, exact warm-up, no look-ahead."""

import math

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.features.raw_ohlcv import RAW_OHLCV_WARMUP, raw_ohlcv_features

EXPECTED_COLUMNS = [
    "log_open_to_previous_close",
    "log_high_to_previous_close",
    "log_low_to_previous_close",
    "log_close_to_previous_close",
    "log_volume_to_mean_20",
]


def test_columns_and_dtype():
    bars = make_bars(50)
    features = raw_ohlcv_features(bars)
    assert list(features.columns) == EXPECTED_COLUMNS
    assert (features.dtypes == "float64").all()
    assert features.index.equals(bars.index)


def test_prices_relative_to_the_previous_close_by_hand():
    index = pd.date_range("2024-01-01", periods=2, freq="B", tz="UTC", name="timestamp")
    bars = pd.DataFrame(
        {
            "open": [99.0, 101.0],
            "high": [100.5, 103.0],
            "low": [98.0, 99.0],
            "close": [100.0, 102.0],
            "volume": [1.0, 1.0],
        },
        index=index,
    )
    row = raw_ohlcv_features(bars).iloc[1]
    assert row["log_open_to_previous_close"] == pytest.approx(math.log(1.01), rel=1e-12)
    assert row["log_high_to_previous_close"] == pytest.approx(math.log(1.03), rel=1e-12)
    assert row["log_low_to_previous_close"] == pytest.approx(math.log(0.99), rel=1e-12)
    assert row["log_close_to_previous_close"] == pytest.approx(math.log(1.02), rel=1e-12)
    assert raw_ohlcv_features(bars).iloc[0, :4].isna().all()


def test_volume_relative_to_its_trailing_mean_by_hand():
    # log(1 + volume) = 0, 1, ..., 19: the last is 19 - 9.5 above the mean.
    bars = make_bars(20).assign(volume=np.expm1(np.arange(20.0)))
    assert raw_ohlcv_features(bars)["log_volume_to_mean_20"].iloc[19] == pytest.approx(9.5, rel=1e-12)
    constant = raw_ohlcv_features(make_bars(40).assign(volume=123.0))["log_volume_to_mean_20"]
    assert (constant.iloc[RAW_OHLCV_WARMUP - 1 :] == 0).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_warmup_is_exact(seed):
    values = raw_ohlcv_features(make_bars(300, seed=seed)).to_numpy()
    assert np.isfinite(values[RAW_OHLCV_WARMUP - 1 :]).all()
    assert np.isnan(values[RAW_OHLCV_WARMUP - 2]).any()


def test_features_do_not_depend_on_price_units():
    bars = make_bars(100, seed=6)
    scaled = bars.assign(**{name: bars[name] * 1e6 for name in ("open", "high", "low", "close")})
    np.testing.assert_allclose(
        raw_ohlcv_features(scaled).to_numpy(), raw_ohlcv_features(bars).to_numpy(), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_raw_ohlcv_features_use_past_bars_only(seed):
    bars = make_bars(300, seed=seed)
    full = raw_ohlcv_features(bars)
    for cut in range(0, 300, 7):
        truncated = raw_ohlcv_features(bars.iloc[: cut + 1])
        assert truncated.index.equals(full.index[: cut + 1])
        # Bit-identical: pandas' rolling windows run forward from the first bar.
        np.testing.assert_array_equal(truncated.to_numpy(), full.to_numpy()[: cut + 1], err_msg=f"cut={cut}")
