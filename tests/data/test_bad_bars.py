"""Every bad bar of a panel in one error, per symbol, column and problem; or dropped with bad_bars="drop", said."""

import logging

import numpy as np
import pytest
from conftest import make_bars

from keras_synapse.data import load_panel
from keras_synapse.data.panel import Panel
from keras_synapse.errors import DataError

NUM_SYMBOLS = 30
BROKEN = range(0, 30, 3)  # 10 of the 30 symbols


def _set(bars, positions, column, value):
    bars.iloc[list(positions), bars.columns.get_loc(column)] = value
    return bars


def _broken(seed):
    """The problems of a real 257-stock panel: a close outside [low, high] on 5 bars, a zero open, a negative
    volume, a low of 0.01."""
    bars = make_bars(120, seed=seed)
    bars = _set(bars, [10, 20, 30, 40, 50], "close", bars["high"].iloc[[10, 20, 30, 40, 50]].to_numpy() * 1.05)
    bars = _set(bars, [60], "open", 0.0)
    bars = _set(bars, [70], "volume", -100.0)
    return _set(bars, [80], "low", 0.01)


def _write_panel(directory):
    for seed in range(NUM_SYMBOLS):
        bars = _broken(seed) if seed in BROKEN else make_bars(120, seed=seed)
        bars.to_csv(directory / f"S{seed:02d}.csv")


def test_bad_bars_in_10_of_30_symbols_are_all_listed_in_one_error(tmp_path):
    _write_panel(tmp_path)
    with pytest.raises(DataError) as error:
        load_panel(str(tmp_path))
    message = str(error.value)
    lines = message.splitlines()
    index = make_bars(120).index
    for seed in BROKEN:
        symbol = f"S{seed:02d}"
        # Per symbol and problem: the first bar's time and value, how many more and their first times.
        first_close = float(_broken(seed)["close"].iloc[10])
        assert (f"Symbol '{symbol}', column 'close': price outside [low, high] at {index[10]} (value {first_close!r}); "
                "4 more bars: 2024-01-29, 2024-02-12, 2024-02-26, ...") in lines
        assert f"Symbol '{symbol}', column 'open': non-positive price at {index[60]} (value 0.0)" in lines
        assert f"Symbol '{symbol}', column 'volume': negative volume at {index[70]} (value -100.0)" in lines
        assert any(line.startswith(f"Symbol '{symbol}', column 'low': absurd value 0.01 at {index[80]}")
                   for line in lines)
    assert not any("'S01'" in line for line in lines)
    assert lines[-1].startswith("80 bad bars in 10 of 30 symbol(s), listed above per symbol, column and problem")
    assert "--set bad_bars=drop" in lines[-1] and "unadjusted split" in lines[-1]
    assert len(lines) == 10 * 4 + 1


def test_bad_bars_drop_drops_them_and_says_what_it_dropped(tmp_path, caplog):
    _write_panel(tmp_path)
    with caplog.at_level(logging.WARNING, "keras_synapse.data"):
        panel = load_panel(str(tmp_path), bad_bars="drop")
    assert len(panel) == NUM_SYMBOLS
    for seed in range(NUM_SYMBOLS):
        assert len(panel[f"S{seed:02d}"]) == (112 if seed in BROKEN else 120)
    kept = panel["S00"]
    assert (kept["open"] > 0).all() and (kept["volume"] >= 0).all() and kept["low"].min() > 1
    assert ((kept["close"] <= kept["high"]) & (kept["close"] >= kept["low"])).all()
    said = [record.getMessage() for record in caplog.records if "bad_bars=drop" in record.getMessage()]
    assert len(said) == 1  # once for the panel
    assert said[0].startswith("bad_bars=drop: dropped 80 bad bars in 10 of 30 symbol(s): S00 8 (open non-positive "
                              "price 1, volume negative volume 1, close price outside [low, high] 5, low absurd value "
                              "1); S03 8 (")


def test_symbols_refused_as_a_whole_are_listed_with_the_bad_bars(tmp_path):
    bars = make_bars(60)
    frames = {"GOOD": bars, "NOVOL": bars.drop(columns="volume"), "BAD": _set(bars.copy(), [5, 9], "high", -1.0)}
    with pytest.raises(DataError) as error:
        Panel(frames)
    lines = str(error.value).splitlines()
    assert lines[0].startswith("Symbol 'NOVOL': missing required column(s) ['volume']")
    assert lines[1].startswith("Symbol 'BAD', column 'high': non-positive price at ")
    assert lines[-1].startswith("1 of 3 symbol(s) refused as a whole (above). 2 bad bars in 1 of 3 symbol(s)")


def test_one_bad_bar_reads_as_before():
    """A single problem is the message's first line: the symbol, column, problem, time and value."""
    bars = _set(make_bars(60), [12], "close", -1.0)
    with pytest.raises(DataError) as error:
        Panel({"ACME": bars})
    assert str(error.value).startswith(f"Symbol 'ACME', column 'close': non-positive price at {bars.index[12]} "
                                       "(value -1.0)\n1 bad bar in 1 of 1 symbol(s)")  # not again as outside the range


def test_a_symbol_whose_every_bar_is_bad_is_refused_even_when_dropping():
    bars = make_bars(10)
    bars["volume"] = -1.0
    with pytest.raises(DataError, match=r"Symbol 'NEG': every one of its 10 bars is bad"):
        Panel({"OK": make_bars(10), "NEG": bars}, bad_bars="drop")


def test_a_non_numeric_value_is_one_problem_not_also_a_nan():
    bars = make_bars(60).astype(object)
    bars.iloc[4, 3] = "n/a"
    with pytest.raises(DataError) as error:
        Panel({"ACME": bars})
    assert str(error.value).splitlines()[0] == (f"Symbol 'ACME', column 'close': non-numeric value 'n/a' at "
                                                f"{make_bars(60).index[4]}")
    assert "NaN" not in str(error.value)
    assert np.isfinite(Panel({"ACME": bars}, bad_bars="drop")["ACME"].to_numpy()).all()
