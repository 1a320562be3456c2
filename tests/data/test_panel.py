"""Every bad-input case gets a DataError naming symbol, column and first bad timestamp."""

import logging

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.data.panel import Panel, validate_bars
from keras_synapse.errors import DataError


def corrupt(bars, row, column, value):
    bars = bars.copy()
    bars.iloc[row, bars.columns.get_loc(column)] = value
    return bars


@pytest.mark.parametrize(
    "column, value, problem",
    [
        ("close", np.nan, "NaN or infinite value"),
        ("high", np.inf, "NaN or infinite value"),
        ("open", 0.0, "non-positive price"),
        ("low", -1.0, "non-positive price"),
        ("volume", -5.0, "negative volume"),
    ],
)
def test_bad_values_name_symbol_column_and_first_timestamp(bars, column, value, problem):
    broken = corrupt(corrupt(bars, 7, column, value), 30, column, value)
    with pytest.raises(DataError) as error:
        validate_bars(broken, "ACME")
    message = str(error.value)
    assert "'ACME'" in message and f"'{column}'" in message and problem in message
    assert str(bars.index[7]) in message  # the first bad bar, not a later one


def test_high_below_low(bars):
    broken = corrupt(bars, 5, "high", bars["low"].iloc[5] * 0.9)
    with pytest.raises(DataError, match=r"'ACME', column 'high': high below low at 2024-01-08"):
        validate_bars(broken, "ACME")


def test_close_outside_range(bars):
    broken = corrupt(bars, 3, "close", bars["high"].iloc[3] * 1.05)
    with pytest.raises(DataError, match=r"column 'close': price outside \[low, high\] at 2024-01-04"):
        validate_bars(broken, "ACME")


def test_duplicate_timestamps(bars):
    broken = pd.concat([bars.iloc[:10], bars.iloc[9:10], bars.iloc[10:]])
    with pytest.raises(DataError, match=r"'ACME', column 'timestamp': duplicate timestamp 2024-01-12"):
        validate_bars(broken, "ACME")


def test_unsorted_timestamps(bars):
    broken = bars.iloc[[0, 1, 3, 2, 4]]
    with pytest.raises(DataError, match=r"not sorted; 2024-01-03 00:00:00\+00:00 comes after 2024-01-04"):
        validate_bars(broken, "ACME")


def test_missing_columns(bars):
    with pytest.raises(DataError, match=r"'ACME': missing required column\(s\) \['volume'\]"):
        validate_bars(bars.drop(columns="volume"), "ACME")


def test_empty(bars):
    with pytest.raises(DataError, match="'ACME': no bars"):
        validate_bars(bars.iloc[:0], "ACME")


def test_non_numeric_value(bars):
    broken = bars.astype(object)
    broken.iloc[4, 3] = "n/a"
    with pytest.raises(DataError, match=r"column 'close': non-numeric value 'n/a' at 2024-01-05"):
        validate_bars(broken, "ACME")


def test_naive_timestamps_are_taken_as_utc_and_said_once(caplog, monkeypatch):
    from keras_synapse.data import panel

    monkeypatch.setattr(panel, "SAID_ONCE", set())
    naive = make_bars(tz=None)
    with caplog.at_level(logging.WARNING):
        canonical = validate_bars(naive, "ACME")
        Panel({"AAA": naive, "BBB": naive})
    assert str(canonical.index.tz) == "UTC"
    assert [record.getMessage() for record in caplog.records] == [
        "Naive timestamps are taken as UTC (first seen for symbol 'ACME'; said once)."]


def test_other_time_zones_are_converted_to_utc():
    eastern = make_bars(tz="America/New_York")
    canonical = validate_bars(eastern, "ACME")
    assert str(canonical.index.tz) == "UTC"
    assert canonical.index[0] == eastern.index[0]


def test_canonical_form_is_float64_ohlcv_only(bars):
    extra = bars.assign(adj_close=1.0, volume=bars["volume"].astype(int))
    canonical = validate_bars(extra, "ACME")
    assert list(canonical.columns) == ["open", "high", "low", "close", "volume"]
    assert (canonical.dtypes == "float64").all()


def test_history_too_short(bars):
    panel = Panel({"LONG": bars, "SHORT": bars.iloc[:10]})
    with pytest.raises(DataError, match=r"History too short for window 20 \+ horizon 5 \(needs 45 bars\): 'SHORT' has 10"):
        panel.require_history(45, "window 20 + horizon 5")


def test_panel_fingerprint_changes_with_any_value(bars):
    panel = Panel({"A": bars})
    assert panel.fingerprint() == Panel({"A": bars.copy()}).fingerprint()
    assert panel.fingerprint() != Panel({"A": corrupt(bars, 50, "volume", 1.0)}).fingerprint()


def test_empty_panel():
    with pytest.raises(DataError, match="no symbols"):
        Panel({})


def test_a_bad_value_reads_as_a_plain_number():
    bars = make_bars(10)
    bars.iloc[4, bars.columns.get_loc("close")] = bars["high"].iloc[4] * 2
    with pytest.raises(DataError) as error:
        validate_bars(bars, "X")
    assert "np.float64" not in str(error.value) and f"(value {float(bars['close'].iloc[4])!r})" in str(error.value)
