"""Tests for time resampling and volume/dollar bars, on hand-computed examples."""

import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.data.bars import dollar_bars, resample_panel, resample_time_bars, volume_bars
from keras_synapse.data.panel import Panel
from keras_synapse.data.synthetic import generate_universe
from keras_synapse.errors import ConfigError, DataError

COLUMNS = ["open", "high", "low", "close", "volume"]


def _bars(dates, rows):
    index = pd.DatetimeIndex(pd.to_datetime(dates), name="timestamp").tz_localize("UTC")
    return pd.DataFrame(rows, columns=COLUMNS, index=index, dtype="float64")


@pytest.fixture
def daily():
    # Seven days; close * volume = 330, 600, 130, 1680, 300, 620, 742.5.
    return _bars(
        pd.date_range("2024-01-01", periods=7, freq="D"),
        [
            [10, 11, 9, 11, 30],
            [11, 13, 10, 12, 50],
            [12, 13, 11, 13, 10],
            [13, 15, 12, 14, 120],
            [14, 16, 13, 15, 20],
            [15, 16, 14, 15.5, 40],
            [16, 17, 15, 16.5, 45],
        ],
    )


def test_volume_bars_close_on_multiples_of_cumulative_volume(daily):
    # Cumulative volume 30, 80, 90, 210, 230, 270, 315. Day 4 crosses 100
    # and 200 at once: one bar (days 1-4), no empty bar. The next bar closes
    # when 300 is crossed on day 7 (days 5-7), carrying day 4's overshoot.
    result = volume_bars(daily, 100)
    expected = _bars(
        ["2024-01-04", "2024-01-07"],
        [
            [10, 15, 9, 14, 210],
            [14, 17, 13, 16.5, 105],
        ],
    )
    pd.testing.assert_frame_equal(result, expected)


def test_incomplete_trailing_volume_bar_is_dropped(daily):
    # Through day 6 the second bar (230 .. 270) has not reached 300 yet.
    result = volume_bars(daily.iloc[:6], 100)
    assert list(result.index) == [pd.Timestamp("2024-01-04", tz="UTC")]
    assert volume_bars(daily, 1000).empty


def test_dollar_bars_close_on_multiples_of_cumulative_traded_value(daily):
    # Cumulative close * volume: 330, 930, 1060, 2740, 3040, 3660, 4402.5.
    # Multiples of 1000 are crossed on days 3, 4 (two at once), 5 and 7.
    result = dollar_bars(daily, 1000)
    expected = _bars(
        ["2024-01-03", "2024-01-04", "2024-01-05", "2024-01-07"],
        [
            [10, 13, 9, 13, 90],
            [13, 15, 12, 14, 120],
            [14, 16, 13, 15, 20],
            [15, 17, 14, 16.5, 85],
        ],
    )
    pd.testing.assert_frame_equal(result, expected)


def test_information_bars_never_change_once_emitted():
    # A bar stamped at t must be the same whether the data end at t or run
    # on: it is built from bars <= t only.
    frame = generate_universe(num_symbols=1, num_bars=600, seed=3).panel["SYN-00"]
    threshold = frame["volume"].median() * 4.5
    for make, size in ((volume_bars, threshold), (dollar_bars, threshold * frame["close"].median())):
        full = make(frame, size)
        assert 50 < len(full) < 200
        assert full.index.isin(frame.index).all()
        Panel({"SYN-00": full}, validate=True)
        for cut in (137, 301, 599):
            end = frame.index[cut]
            pd.testing.assert_frame_equal(make(frame.loc[:end], size), full.loc[:end])


def test_resample_to_weeks_drops_empty_weeks_and_stamps_last_bar():
    # Mon 1 .. Fri 5 January, nothing in the week of the 8th, Mon 15 and
    # Tue 16 January.
    daily = _bars(
        ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-15", "2024-01-16"],
        [
            [10, 11, 9, 10.5, 100],
            [10.5, 12, 10, 11.5, 200],
            [11.5, 11.8, 8, 9, 300],
            [9, 10, 8.5, 9.5, 150],
            [9.5, 10.2, 9.1, 10, 250],
            [10, 10.4, 9.7, 10.1, 50],
            [10.1, 13, 10, 12.5, 70],
        ],
    )
    result = resample_time_bars(daily, "W")
    expected = _bars(
        ["2024-01-05", "2024-01-16"],
        [
            [10, 12, 8, 10, 1000],
            [10, 13, 9.7, 12.5, 120],
        ],
    )
    pd.testing.assert_frame_equal(result, expected)


def test_resample_hourly_bars_into_days():
    hourly = _bars(
        ["2024-03-01 14:00", "2024-03-01 15:00", "2024-03-04 14:00"],
        [
            [100, 101, 99, 100.5, 10],
            [100.5, 102, 100, 101, 20],
            [101, 101.5, 98, 99, 5],
        ],
    )
    result = resample_time_bars(hourly, "D")
    expected = _bars(
        ["2024-03-01 15:00", "2024-03-04 14:00"],
        [
            [100, 102, 99, 101, 30],
            [101, 101.5, 98, 99, 5],
        ],
    )
    pd.testing.assert_frame_equal(result, expected)


def test_resample_panel_resamples_every_symbol():
    panel = generate_universe(num_symbols=3, num_bars=120, seed=2).panel
    weekly = resample_panel(panel, "W")
    assert weekly.symbols == panel.symbols
    for symbol in panel:
        pd.testing.assert_frame_equal(weekly[symbol], resample_time_bars(panel[symbol], "W"))
        assert weekly[symbol]["volume"].sum() == pytest.approx(panel[symbol]["volume"].sum())
    Panel(dict(weekly), validate=True)


@pytest.mark.parametrize(
    "make, name, value",
    [
        (volume_bars, "volume_per_bar", 0),
        (volume_bars, "volume_per_bar", -5.0),
        (volume_bars, "volume_per_bar", float("inf")),
        (dollar_bars, "dollars_per_bar", 0),
        (dollar_bars, "dollars_per_bar", "1e6"),
    ],
)
def test_non_positive_thresholds_are_refused(daily, make, name, value):
    with pytest.raises(ConfigError) as error:
        make(daily, value)
    assert str(error.value) == f"`{name}` must be > 0. Received: {name}={value!r}"


def test_volume_per_bar_zero_message(daily):
    with pytest.raises(ConfigError, match=r"^`volume_per_bar` must be > 0. Received: volume_per_bar=0$"):
        volume_bars(daily, 0)


def test_bad_rule_and_bad_frames_are_refused(daily):
    with pytest.raises(ConfigError, match="`rule` must be a pandas offset alias such as 'W' or 'ME'. Received: rule='weekly'"):
        resample_time_bars(daily, "weekly")
    with pytest.raises(DataError, match=r"missing column\(s\) \['volume'\]"):
        volume_bars(daily.drop(columns="volume"), 10)
    with pytest.raises(DataError, match="DatetimeIndex"):
        dollar_bars(daily.reset_index(drop=True), 10)


def test_empty_input_gives_empty_bars(daily):
    for result in (volume_bars(daily.iloc[:0], 10), dollar_bars(daily.iloc[:0], 10), resample_time_bars(daily.iloc[:0], "W")):
        assert result.empty
        assert list(result.columns) == COLUMNS
        assert str(result.index.tz) == "UTC"


def test_bar_specs_from_the_experiment_build_the_models_bars():
    from keras_synapse.data import load_panel
    from keras_synapse.data.bars import build_bars, parse_bar_spec

    panel = load_panel("sample", quick=True)
    assert build_bars(panel, "") is panel
    weekly = build_bars(panel, "time:1W")
    assert len(weekly["SP500"]) < len(panel["SP500"]) / 4
    daily_value = (panel["SP500"]["close"] * panel["SP500"]["volume"]).median()
    dollars = build_bars(panel, f"dollar:{10 * daily_value}")
    assert 0.05 < len(dollars["SP500"]) / len(panel["SP500"]) < 0.15  # about one bar per ten days' value
    assert dollars["SP500"].index.isin(panel["SP500"].index).all()  # stamped at their last source bar
    assert parse_bar_spec(" volume:2e6 ") == ("volume", 2e6, False)
    relative = build_bars(panel, "dollar:3x")  # three of each symbol's early median days
    for symbol in panel.symbols:  # over the first 60 bars, about one bar per three (later, as activity grows)
        early = (relative[symbol].index <= panel[symbol].index[59]).sum()
        assert 12 <= early <= 28 and len(relative[symbol]) < len(panel[symbol]), symbol
    for bad, message in (("dollar", "must be KIND:VALUE"), ("tick:5", "must be KIND:VALUE"),
                         ("volume:lots", "threshold must be a number"), ("volume:x", "threshold must be a number"), ("dollar:-5", "must be > 0")):
        with pytest.raises(ConfigError, match=message):
            parse_bar_spec(bad)


def test_activity_bars_need_volume():
    from keras_synapse.data.bars import build_bars

    closes = make_bars(100)
    closes = closes.assign(open=closes["close"], high=closes["close"], low=closes["close"], volume=0.0)
    with pytest.raises(DataError, match=r"bars=volume:1000` needs traded volume, and symbol\(s\) \['AAA'\]"):
        build_bars(Panel({"AAA": closes}), "volume:1000")


def test_network_specs_name_an_interval_after_the_symbols():
    from keras_synapse.data import network_spec

    assert network_spec("yfinance:AAPL,MSFT@1h") == ("yfinance", ["AAPL", "MSFT"], "1h")
    assert network_spec("yfinance:AAPL") == ("yfinance", ["AAPL"], "1d")
    assert network_spec("alpaca:SPY@15Min") == ("alpaca", ["SPY"], "15Min")
    with pytest.raises(DataError, match="must name a Yahoo interval, one of 1m, .*Received: '1hour'"):
        network_spec("yfinance:AAPL@1hour")
    with pytest.raises(DataError, match="names no bar interval after '@'"):
        network_spec("alpaca:SPY@")
