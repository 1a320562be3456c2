"""Real bars as users have them, from the files the `backtesting` package ships (a test dependency)."""

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import backtesting
import pytest

from keras_synapse.data import load_panel
from keras_synapse.errors import DataError
from keras_synapse.features import compute_features
from keras_synapse.labels import compute_labels
from keras_synapse.windows.dataset import build_windowed_panel

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


def test_eurusd_hourly_bars_load_and_their_weekend_gaps_are_said(tmp_path, caplog):
    """Intraday FX: every weekend is a 49-hour gap the window rule skips; the run says how many windows it costs."""
    panel = load_panel(str(_directory(tmp_path, "EURUSD")))
    with caplog.at_level(logging.WARNING, "keras_synapse.windows"):
        build_windowed_panel(compute_features(panel, "core"), compute_labels(panel, horizon=5), 20, 5)
    said = [record.getMessage() for record in caplog.records if "skipped as data gaps" in record.getMessage()]
    assert len(said) == 1 and "most in EURUSD" in said[0] and "Weekends and nights of intraday bars" in said[0]
    lost = float(said[0].split("(")[1].split("%")[0])
    assert 10 < lost < 25  # about one window in six spans a weekend


def test_monthly_bitcoin_beside_daily_google_is_refused_by_name(tmp_path):
    with pytest.raises(DataError, match=r"different bar frequencies .*BTCUSD.* GOOG|different bar frequencies .*GOOG"
                                        r".*BTCUSD"):
        load_panel(str(_directory(tmp_path, "GOOG", "BTCUSD")))


@pytest.mark.slow  # a whole training run
def test_google_trains_through_the_command_line(tmp_path, request):
    (tmp_path / "bars").mkdir()
    data = _directory(tmp_path / "bars", "GOOG")
    result = subprocess.run([sys.executable, "-m", "keras_synapse.train",
                             str(request.config.rootpath / "experiments" / "shared_backbone.py"), "--quick",
                             "--data", str(data), "--output", str(tmp_path / "runs"),
                             "--registry", str(tmp_path / "models")], capture_output=True, text=True, timeout=600,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "calendar: 1 symbol(s), median bar spacing 1 day; 2148 bar times" in result.stdout
    assert "detectable edge" in result.stdout
