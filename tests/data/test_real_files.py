"""Real bars as users have them, from the files the `backtesting` package ships (a test dependency)."""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import backtesting
import numpy as np
import pandas as pd
import pytest

from keras_synapse.data import load_panel
from keras_synapse.errors import DataError
from keras_synapse.evaluation.backtest import backtest
from keras_synapse.features import compute_features
from keras_synapse.labels import compute_labels
from keras_synapse.windows.dataset import build_windowed_panel
from keras_synapse.windows.sessions import SessionHours

SHIPPED = Path(backtesting.__file__).parent / "test"


def _directory(tmp_path, *names):
    for name in names:
        shutil.copy(SHIPPED / f"{name}.csv", tmp_path / f"{name}.csv")
    return tmp_path


def test_googles_daily_bars_load_as_written_by_pandas(tmp_path):
    """GOOG.csv is `df.to_csv()` output: an unnamed date column, capitalized OHLCV, naive dates."""
    panel = load_panel(str(_directory(tmp_path, "GOOG")))
    bars = panel["GOOG"]
    assert len(bars) == 2148 and str(bars.index[0].date()) == "2004-08-19" and bars.index.tz is not None
    assert panel.close_only_symbols == ()


def _buy_and_hold_entries(windowed, horizon):
    """Total one-way turnover of buy-and-hold over every labelled window: 2 is a single entry and exit."""
    frame = windowed.window_frame(windowed.labelled_ends()).assign(score=1.0)
    results, equity = backtest(frame, "score", horizon, 0, windowed.calendar)
    return results["buy_and_hold"]["turnover"] * results["buy_and_hold"]["num_periods"]


def test_eurusd_hourly_bars_lose_no_windows_to_weekends(tmp_path, caplog):
    """Intraday FX closes every Friday evening for 49 hours: a closure of its session, not an outage."""
    panel = load_panel(str(_directory(tmp_path, "EURUSD")))
    features, labels = compute_features(panel, "core"), compute_labels(panel, horizon=5)
    with caplog.at_level(logging.WARNING, "keras_synapse.windows"):
        windowed = build_windowed_panel(features, labels, 20, 5)
    assert windowed.sessions == SessionHours(closes=(20, 21), opens=(21, 22))  # 21:00/22:00 UTC, daylight saving
    assert not [record for record in caplog.records if "outage" in record.getMessage()]
    rows = len(features["EURUSD"])
    assert windowed.window_ok.sum() == rows - 19  # every window of 20 rows
    assert _buy_and_hold_entries(windowed, 5) == pytest.approx(2.0)

    # The rule without sessions, as it was: about one window in six lost, and buy-and-hold re-enters weekly.
    with caplog.at_level(logging.WARNING, "keras_synapse.windows"):
        blind = build_windowed_panel(features, labels, 20, 5, sessions=SessionHours())
    said = [record.getMessage() for record in caplog.records if "outage" in record.getMessage()]
    assert len(said) == 1 and "most in EURUSD" in said[0]
    assert 10 < float(said[0].split("(")[1].split("%")[0]) < 25
    assert _buy_and_hold_entries(blind, 5) > 40


def test_monthly_bitcoin_beside_daily_google_is_refused_by_name(tmp_path):
    with pytest.raises(DataError, match=r"different bar frequencies .*BTCUSD.* GOOG|different bar frequencies .*GOOG"
                                        r".*BTCUSD"):
        load_panel(str(_directory(tmp_path, "GOOG", "BTCUSD")))


@pytest.mark.slow  # a whole training run
def test_google_beside_a_seven_day_series_trains_through_the_command_line(tmp_path, request):
    """GOOG's trading days beside a coin that trades every day: each is held as a sleeve on its own calendar."""
    (tmp_path / "bars").mkdir()
    data = _directory(tmp_path / "bars", "GOOG")
    goog = pd.read_csv(data / "GOOG.csv", index_col=0, parse_dates=True)
    every_day = pd.date_range(goog.index[0], goog.index[-1], freq="D")
    close = goog["Close"].reindex(every_day).interpolate() * np.exp(np.random.default_rng(0).normal(0, 0.01,
                                                                                                   len(every_day)))
    pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1e6},
                 index=every_day.rename("date")).to_csv(data / "COIN.csv")
    result = subprocess.run([sys.executable, "-m", "keras_synapse.train",
                             str(request.config.rootpath / "experiments" / "shared_backbone.py"), "--quick",
                             "--data", str(data), "--output", str(tmp_path / "runs"),
                             "--registry", str(tmp_path / "models")], capture_output=True, text=True, timeout=600,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "calendar: 2 symbol(s), median bar spacing 1 day" in result.stdout
    # --quick bounds the user's own bars: one span of time for both calendars, no symbol over 1500 bars.
    assert "quick: 2 of 2 symbol(s), the last 1500 of up to" in result.stdout
    assert "detectable edge" in result.stdout
    assert "sleeve COIN (50% of capital, its own calendar, 73 periods a year" in result.stdout  # 365 days / 5
    metrics = json.loads(next((tmp_path / "runs").glob("*/*/metrics.json")).read_text())
    sleeves = {tuple(sleeve["symbols"]): sleeve for sleeve in metrics["backtest"]["sleeves"]}
    assert set(sleeves) == {("GOOG",), ("COIN",)}
    assert 48 < sleeves[("GOOG",)]["periods_per_year"] < 52  # about 252 trading days / 5
    # One entry and one exit per sleeve (contiguous test folds), whatever the other calendar holds.
    buy_and_hold = metrics["backtest"]["buy_and_hold"]
    assert buy_and_hold["turnover"] * buy_and_hold["num_periods"] == pytest.approx(2.0)
