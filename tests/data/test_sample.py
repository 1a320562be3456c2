"""Tests for the offline sample panel."""

import logging
import socket

import numpy as np
import pandas as pd
import pytest

from keras_synapse.data.panel import Panel
from keras_synapse.data.sample import load_sample
from keras_synapse.errors import ConfigError

REAL_SYMBOLS = ("SP500", "NASDAQ")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_sample tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def sample():
    return load_sample()


def test_loads_real_and_synthetic_symbols_offline(sample):
    assert sample.symbols == REAL_SYMBOLS + tuple(f"SYN-{number:02d}" for number in range(10))
    assert sample.start == pd.Timestamp("1999-01-04", tz="UTC")
    assert sample.end == pd.Timestamp("2018-12-31", tz="UTC")


def test_all_symbols_share_one_utc_calendar(sample):
    dates = sample["SP500"].index
    assert len(dates) == 5031
    for symbol, frame in sample.items():
        assert str(frame.index.tz) == "UTC", symbol
        assert frame.index.equals(dates), symbol
        assert list(frame.columns) == ["open", "high", "low", "close", "volume"]


def test_every_bar_passes_validation_and_volume_is_positive(sample):
    Panel(dict(sample), validate=True)
    for symbol, frame in sample.items():
        assert (frame["volume"] > 0).all(), symbol


def test_zero_volume_defect_is_repaired_from_the_previous_bar(caplog):
    with caplog.at_level(logging.INFO, logger="keras_synapse.data.sample"):
        nasdaq = load_sample(num_synthetic=0)["NASDAQ"]
    for day, previous_day in (("2015-05-12", "2015-05-11"), ("2018-01-09", "2018-01-08")):
        assert nasdaq.loc[day, "volume"].item() == nasdaq.loc[previous_day, "volume"].item() > 0
    assert "2 bar(s) with zero volume (2015-05-12, 2018-01-09)" in caplog.text
    # The prices of those days are real and kept.
    assert nasdaq.loc["2015-05-12", "close"].item() == pytest.approx(4976.189941)


def test_real_bars_are_the_arch_data():
    from arch.data import sp500

    raw = sp500.load()
    bars = load_sample(num_synthetic=0)["SP500"]
    np.testing.assert_array_equal(bars["close"].to_numpy(), raw["Close"].to_numpy())
    assert bars.index.equals(raw.index.tz_localize("UTC"))


def test_quick_is_a_smaller_slice_of_the_full_sample(sample):
    quick = load_sample(quick=True)
    assert quick.symbols == REAL_SYMBOLS + ("SYN-00", "SYN-01", "SYN-02", "SYN-03")
    assert quick.num_bars < sample.num_bars / 5
    for symbol, frame in quick.items():
        assert len(frame) == 1500
        pd.testing.assert_frame_equal(frame, sample[symbol].iloc[-1500:])


def test_same_arguments_give_the_same_panel(sample):
    assert load_sample().fingerprint() == sample.fingerprint()
    assert load_sample(seed=8).fingerprint() != sample.fingerprint()


def test_signal_strength_changes_only_synthetic_returns(sample):
    with_signal = load_sample(signal_strength=0.5)
    for symbol in REAL_SYMBOLS:
        pd.testing.assert_frame_equal(with_signal[symbol], sample[symbol])
    # Same seed, same volumes: only the planted drift in the prices differs.
    pd.testing.assert_series_equal(with_signal["SYN-00"]["volume"], sample["SYN-00"]["volume"])
    assert not np.allclose(with_signal["SYN-00"]["close"], sample["SYN-00"]["close"])


def test_num_synthetic_controls_the_synthetic_symbols():
    assert load_sample(num_synthetic=0).symbols == REAL_SYMBOLS
    assert load_sample(num_synthetic=2, quick=True).symbols == REAL_SYMBOLS + ("SYN-00", "SYN-01")
    with pytest.raises(ConfigError, match="`num_synthetic` must be an integer >= 0. Received: num_synthetic=-1"):
        load_sample(num_synthetic=-1)
