"""A real-looking panel through the command line in one go: every file option of the issue at once, each said once.

The shape of the exchange files users bring: a `dt` date column, a traded
value instead of volume, bad bars in 10 of 30 symbols, an unadjusted 4:1
split, and the exchange's week-long holidays (the Spring Festival, National
Day) in every symbol's dates.
"""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # a whole (quick) training run


def _shanghai_sessions():
    import exchange_calendars

    return exchange_calendars.get_calendar("XSHG", start="2015-01-05", end="2021-06-30").sessions


def _write_files(directory):
    sessions = _shanghai_sessions()
    for number in range(30):
        rng = np.random.default_rng(number)
        close = 20 * np.exp(np.cumsum(rng.normal(0, 0.015, len(sessions))))
        if number == 7:
            close[800:] /= 4  # an unadjusted 4:1 split
        open_ = close * np.exp(rng.normal(0, 0.004, len(sessions)))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, len(sessions)))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, len(sessions)))
        if number % 3 == 0:  # bad bars in 10 of the 30 symbols
            open_[100] = 0.0
            close[200] = high[200] * 1.05
        value = close * rng.integers(100_000, 1_000_000, len(sessions))
        pd.DataFrame({"dt": sessions.strftime("%Y-%m-%d"), "open": open_, "high": high, "low": low,
                      "close": close, "value": value}).to_csv(directory / f"6000{number:02d}.SS.csv", index=False)


def test_exchange_files_with_every_quirk_train_in_one_command(tmp_path, request):
    (tmp_path / "bars").mkdir()
    _write_files(tmp_path / "bars")
    command = [sys.executable, "-m", "keras_synapse.train",
               str(request.config.rootpath / "experiments" / "shared_backbone.py"), "--quick",
               "--data", str(tmp_path / "bars"), "--set", "date_column=dt", "--set", "bad_bars=drop",
               "--set", "exchange_calendar=XSHG", "--output", str(tmp_path / "runs"),
               "--registry", str(tmp_path / "models")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said[-3000:]
    # Each choice said once: the traded value for volume, the dropped bars, the split.
    assert said.count("traded value stands in") == 1
    assert said.count("dropped") >= 1 and "600000.SS" in said
    split_lines = [line for line in said.splitlines() if "600007.SS" in line and "split" in line]
    assert len(split_lines) == 1 and "4:1" in split_lines[0].replace("1:4", "4:1"), split_lines
    # The holidays are the exchange's closures, not outages: no window said lost to a data outage.
    assert "span a data outage" not in said
    assert "quick: 6 of 30 symbol(s)" in result.stdout
