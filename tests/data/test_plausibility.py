"""Plausibility: absurd values refused, constant and stale series said, mixed bar frequencies refused."""

import logging
import re

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.data import load_panel
from keras_synapse.data.panel import validate_bars
from keras_synapse.errors import DataError


def _set_price(bars, position, price):
    for column in ("open", "high", "low", "close"):
        bars.iloc[position, bars.columns.get_loc(column)] = price
    return bars


def test_a_mistyped_exponent_is_refused_at_its_bar():
    bars = _set_price(make_bars(300), 150, 1e300)
    when = re.escape(str(bars.index[150]))
    with pytest.raises(DataError, match=rf"Symbol 'X', column 'open': absurd value 1e\+300 at {when}.*"
                                        r"median close of the bars around it \(\d+\.\d+\)\n") as error:
        validate_bars(bars, "X")
    assert "more bar" not in str(error.value)  # one bar: no count of more


def test_a_first_bar_in_cents_among_dollars_is_refused():
    bars = make_bars(300)
    bars.iloc[0] = bars.iloc[0] * [1000, 1000, 1000, 1000, 1]
    with pytest.raises(DataError, match=f"absurd value .* at {re.escape(str(bars.index[0]))}"):
        validate_bars(bars, "X")


def test_an_absurd_volume_is_refused():
    bars = make_bars(300)
    bars.iloc[200, bars.columns.get_loc("volume")] = 1e300
    when = re.escape(str(bars.index[200]))
    with pytest.raises(DataError, match=f"column 'volume': absurd value 1e\\+300 at {when}"):
        validate_bars(bars, "X")


@pytest.mark.parametrize("move", [0.77, 2.34, 0.2, 5.0])  # 1987's -23%, GameStop's +134%, -80%, +400%
def test_the_largest_real_one_day_moves_pass(move):
    bars = make_bars(300)
    bars.iloc[150:] = bars.iloc[150:] * [move, move, move, move, 1]  # a lasting move, not a one-bar spike
    bars.iloc[150, bars.columns.get_loc("open")] = bars["close"].iloc[149]  # gap inside the bar's range
    bars.iloc[150, bars.columns.get_loc("high")] = bars.iloc[150][["open", "close", "high"]].max()
    bars.iloc[150, bars.columns.get_loc("low")] = bars.iloc[150][["open", "close", "low"]].min()
    bars.iloc[180, bars.columns.get_loc("volume")] *= 1000  # an illiquid name's busiest day
    assert len(validate_bars(bars, "X")) == 300


def test_a_volatile_series_is_judged_by_its_own_moves():
    """A symbol moving 25% a bar (a small cryptocurrency) may jump 200x; a quiet one may not."""
    rng = np.random.default_rng(1)
    index = pd.date_range("2024-01-01", periods=300, freq="D", tz="UTC")
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.25, 300)))
    close[150:] *= 200
    wild = pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1e6},
                        index=index)
    wild.iloc[150, 0] = close[149]
    wild.iloc[150, 2] = min(close[149], wild.iloc[150, 2])
    assert len(validate_bars(wild, "WILD")) == 300
    with pytest.raises(DataError, match="absurd value"):
        validate_bars(_set_price(make_bars(300), 150, make_bars(300)["close"].iloc[150] * 200), "QUIET")


def test_constant_and_stale_closes_are_said(caplog):
    caplog.set_level(logging.WARNING, "keras_synapse.data")
    validate_bars(make_bars(300), "FINE")
    assert not caplog.records
    flat = _set_price(make_bars(300), slice(None), 50.0)
    validate_bars(flat, "FLAT")
    assert "Symbol 'FLAT': its close never changes (50 for all 300 bars)" in caplog.text
    stale = make_bars(300)
    stale.iloc[100:130] = stale.iloc[99].to_numpy()  # forward-filled for 30 bars
    validate_bars(stale, "STALE")
    assert f"Symbol 'STALE': close unchanged at {stale['close'].iloc[99]:g} for 31 bars in a row ({stale.index[99]}" \
        in caplog.text


def test_mixed_bar_frequencies_are_refused_naming_the_symbols(tmp_path):
    make_bars(300, seed=1).to_csv(tmp_path / "AAA.csv")
    make_bars(300, seed=2).to_csv(tmp_path / "BBB.csv")
    make_bars(300, seed=3, freq="D").to_csv(tmp_path / "BTC.csv")  # seven days a week: still daily
    assert len(load_panel(str(tmp_path))) == 3
    make_bars(300, seed=4, freq="h").to_csv(tmp_path / "EURUSD.csv")
    with pytest.raises(DataError, match=r"different bar frequencies .* every 1 hour: EURUSD; every 1 day: AAA, BBB, "
                                        r"BTC\. Windows and label horizons count bars"):
        load_panel(str(tmp_path))


def test_the_calendar_summary_says_how_many_dates_every_symbol_shares():
    from keras_synapse.data.panel import Panel
    from keras_synapse.data.plausibility import calendar_summary

    stocks = {"AAA": make_bars(100, seed=1), "BBB": make_bars(100, seed=2)}
    assert calendar_summary(Panel(stocks)) == ("calendar: 2 symbol(s), median bar spacing 1 day; 100 bar times, 100.0% "
                                               "of them held by every symbol")
    crypto = make_bars(140, seed=3, freq="D")  # seven days a week over the same 20 weeks
    summary = calendar_summary(Panel({**stocks, "BTC": crypto}), num_calendars=2)
    assert "140 bar times, 71.4% of them held by every symbol (the backtest holds the 2 calendars as sleeves" in summary
    # One calendar group whose symbols miss some bar times (illiquid names) is not called sleeves.
    gappy = {"AAA": make_bars(100, seed=1), "BBB": make_bars(100, seed=2).drop(make_bars(100).index[::10])}
    summary = calendar_summary(Panel(gappy), num_calendars=1)
    assert "sleeves" not in summary and "(one calendar: some symbols miss some of its bar times)" in summary


def _illiquid(seed, share=0.35):
    """Daily bars of a stock that trades on about `share` of the days: its median spacing is 2 days or more."""
    bars = make_bars(600, seed=seed)
    return bars[np.random.default_rng(seed).random(600) < share]


def test_illiquid_daily_symbols_that_skip_days_are_still_daily(tmp_path):
    from keras_synapse.data.plausibility import bar_spacing, median_spacing

    make_bars(600, seed=1).to_csv(tmp_path / "LIQUID.csv")
    for seed in (2, 3):
        _illiquid(seed).to_csv(tmp_path / f"THIN{seed}.csv")
    thin = _illiquid(2)
    assert median_spacing(thin.index) >= pd.Timedelta(days=2)  # what the old rule took for a second frequency
    assert bar_spacing(thin.index) == pd.Timedelta(days=1)
    assert len(load_panel(str(tmp_path))) == 3


def test_daily_beside_weekly_bars_is_still_refused(tmp_path):
    make_bars(600, seed=1).to_csv(tmp_path / "DAILY.csv")
    _illiquid(2).to_csv(tmp_path / "THIN.csv")
    make_bars(120, seed=3, freq="W-FRI").to_csv(tmp_path / "WEEKLY.csv")
    with pytest.raises(DataError, match=r"different bar frequencies .* every 1 day: DAILY, THIN; every 7 days: WEEKLY"):
        load_panel(str(tmp_path))


def _warnings(caplog, text):
    return [record.getMessage() for record in caplog.records if text in record.getMessage()]


def test_an_unadjusted_4_to_1_split_is_warned_naming_symbol_date_and_ratio(tmp_path, caplog):
    raw = make_bars(300, seed=1)
    raw.iloc[:150, :4] *= 4.0  # prices before the split, unadjusted
    raw.to_csv(tmp_path / "SPLIT.csv")
    make_bars(300, seed=2).to_csv(tmp_path / "PLAIN.csv")
    with caplog.at_level(logging.WARNING, "keras_synapse.data"):
        panel = load_panel(str(tmp_path))
    np.testing.assert_allclose(panel["SPLIT"]["close"], raw["close"])  # warned, not changed
    said = _warnings(caplog, "Split-like")
    assert len(said) == 1
    assert said[0].startswith(f"Split-like jumps (prices not adjusted for splits?): SPLIT at {raw.index[150]} (open ")
    assert re.search(r"\(x0\.2\d+, a 4:1 split\?\)", said[0]) and "PLAIN" not in said[0]
    assert "Give split-adjusted prices, or an adjusted-close column ('Adj Close', used when present)" in said[0]


@pytest.mark.parametrize("ratio, guess", [(0.5, "a 1:2 reverse split?"), (1.5, "a 3:2 split?"),
                                          (10.0, "a 10:1 split?")])
def test_other_split_ratios_are_named(ratio, guess, caplog):
    from keras_synapse.data.panel import Panel

    raw = make_bars(100, seed=1)
    raw.iloc[:50, :4] *= ratio
    with caplog.at_level(logging.WARNING, "keras_synapse.data"):
        Panel({"X": raw})
    assert guess in _warnings(caplog, "Split-like")[0]


def test_a_real_halving_the_adjusted_close_shows_too_is_no_split(caplog):
    from keras_synapse.data.panel import Panel

    crash = make_bars(100, seed=1)
    crash.iloc[50:, :4] *= 0.5
    crash.iloc[50, crash.columns.get_loc("open")] = crash["close"].iloc[49]  # opens flat, closes at half
    crash.iloc[50, crash.columns.get_loc("high")] = crash["open"].iloc[50]
    adjusted = crash["close"] * np.where(np.arange(100) < 20, 0.99, 1.0)  # a dividend at bar 20, no split
    with caplog.at_level(logging.WARNING, "keras_synapse.data"):
        Panel({"X": crash.assign(**{"adj close": adjusted})}, adjust_prices=False)
    assert not _warnings(caplog, "Split-like")
    with caplog.at_level(logging.WARNING, "keras_synapse.data"):
        Panel({"X": crash})  # without an adjusted close to tell, it is split-like
    assert "a 2:1 split?" in _warnings(caplog, "Split-like")[0]
