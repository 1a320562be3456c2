"""The user's own files: per-symbol directories and long files, CSV and Parquet."""

import logging

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.data import load_panel
from keras_synapse.data.files import load_files
from keras_synapse.errors import DataError


def write_csv(bars, path, date_name="Date"):
    frame = bars.rename(columns=str.capitalize).reset_index(names=date_name)
    frame.to_csv(path, index=False)


def test_directory_of_csv_and_parquet_files(tmp_path):
    write_csv(make_bars(seed=1), tmp_path / "AAA.csv")
    make_bars(seed=2).reset_index().to_parquet(tmp_path / "BBB.parquet")
    (tmp_path / "notes.txt").write_text("ignored")
    panel = load_panel(str(tmp_path))
    assert panel.symbols == ("AAA", "BBB")
    np.testing.assert_allclose(panel["AAA"]["close"], make_bars(seed=1)["close"])
    assert str(panel["BBB"].index.tz) == "UTC"


@pytest.mark.parametrize("date_name", ["Date", "DATETIME", "timestamp", "Time"])
def test_date_column_names_and_case(tmp_path, date_name):
    write_csv(make_bars(), tmp_path / "AAA.csv", date_name)
    assert len(load_files(tmp_path)["AAA"]) == 60


def test_long_format_file_with_symbol_column(tmp_path):
    frames = [make_bars(seed=seed).reset_index().assign(Symbol=name) for seed, name in ((1, "X"), (2, "Y"))]
    import pandas as pd

    pd.concat(frames).to_csv(tmp_path / "bars.csv", index=False)
    panel = load_files(tmp_path / "bars.csv")
    assert panel.symbols == ("X", "Y")
    np.testing.assert_allclose(panel["Y"]["volume"], make_bars(seed=2)["volume"])


def test_single_file_without_symbol_column_is_one_symbol(tmp_path):
    write_csv(make_bars(), tmp_path / "SPY.csv")
    assert load_files(tmp_path / "SPY.csv").symbols == ("SPY",)


def test_empty_file(tmp_path):
    (tmp_path / "AAA.csv").write_text("")
    with pytest.raises(DataError, match=r"AAA.csv: the file is empty"):
        load_files(tmp_path)


def test_header_only_file(tmp_path):
    (tmp_path / "AAA.csv").write_text("date,open,high,low,close,volume\n")
    with pytest.raises(DataError, match=r"AAA.csv: the file has a header but no rows"):
        load_files(tmp_path)


def test_no_date_column(tmp_path):
    make_bars().reset_index(drop=True).to_csv(tmp_path / "AAA.csv", index=False)
    with pytest.raises(DataError, match=r"AAA.csv: no date column.*Received columns: \['open', 'high'"):
        load_files(tmp_path)


def test_an_unnamed_index_column_of_dates_is_the_date(tmp_path):
    bars = make_bars().rename(columns=str.title)
    bars.index = bars.index.tz_localize(None)
    bars.index.name = None  # as the `backtesting` package's GOOG.csv: header ",Open,High,Low,Close,Volume"
    bars.to_csv(tmp_path / "GOOG.csv")
    assert (tmp_path / "GOOG.csv").read_text().startswith(",Open,High")
    panel = load_files(tmp_path)
    assert len(panel["GOOG"]) == len(bars) and panel["GOOG"].index[0] == make_bars().index[0]
    # An unnamed column of row numbers is no date: the error says what it holds.
    make_bars().reset_index(drop=True).to_csv(tmp_path / "GOOG.csv")
    with pytest.raises(DataError, match="column 'unnamed: 0' holds numbers from 0 to 59"):
        load_files(tmp_path)


def test_mixed_time_zones(tmp_path):
    write_csv(make_bars(num_bars=30), tmp_path / "AAA.csv")
    lines = (tmp_path / "AAA.csv").read_text().splitlines()
    lines[1] = lines[1].replace("+00:00", "-05:00", 1)
    (tmp_path / "AAA.csv").write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"AAA.csv: column 'date' mixes time zones"):
        load_files(tmp_path)


def test_bad_bar_in_a_file_names_the_symbol_column_and_time(tmp_path):
    bars = make_bars()
    bars.iloc[12, 3] = -1.0
    write_csv(bars, tmp_path / "ACME.csv")
    with pytest.raises(DataError, match=r"Symbol 'ACME', column 'close': non-positive price at 2024-01-17"):
        load_files(tmp_path)


def test_missing_path_and_empty_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_files(tmp_path / "nowhere")
    with pytest.raises(DataError, match="holds no bar files"):
        load_files(tmp_path)


def test_per_symbol_file_holding_another_symbol(tmp_path):
    make_bars().reset_index().assign(symbol="MSFT").to_csv(tmp_path / "AAPL.csv", index=False)
    with pytest.raises(DataError, match="named 'AAPL' holds symbol"):
        load_files(tmp_path)


def _new_york_bars():
    bars = make_bars(num_bars=300)
    bars.index = pd.date_range("2024-01-02 16:00", periods=300, freq="B", tz="America/New_York").rename("date")
    return bars


def test_one_zone_with_daylight_saving_loads_as_utc(tmp_path, caplog):
    # pandas writes a New York index with -05:00 in winter and -04:00 in summer: one zone, not a mix.
    bars = _new_york_bars()
    bars.to_csv(tmp_path / "NY.csv")
    text = (tmp_path / "NY.csv").read_text()
    assert "-05:00" in text and "-04:00" in text
    with caplog.at_level("INFO"):
        panel = load_files(tmp_path)
    assert (panel["NY"].index == bars.index.tz_convert("UTC")).all()
    assert "UTC offsets ['-04:00', '-05:00'] (one zone's daylight saving time); converted to UTC" in caplog.text


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_integer_epochs_are_read_in_the_unit_their_size_says(tmp_path, unit):
    bars = _new_york_bars()
    expected = bars.index.tz_convert("UTC")
    bars.index = pd.Index(expected.as_unit(unit).asi8, name="timestamp")
    bars.to_csv(tmp_path / "EPOCH.csv")
    assert (load_files(tmp_path)["EPOCH"].index == expected).all()


def test_yyyymmdd_integers_are_dates_and_other_numbers_are_refused(tmp_path):
    bars = make_bars(num_bars=30)
    dates = bars.index.strftime("%Y%m%d").astype(int)
    bars.index = pd.Index(dates, name="date")
    bars.to_csv(tmp_path / "AAA.csv")
    assert load_files(tmp_path)["AAA"].index[0] == pd.Timestamp(str(dates[0]), tz="UTC")
    bars.index = pd.Index(range(1000, 1030), name="date")
    bars.to_csv(tmp_path / "AAA.csv")
    with pytest.raises(DataError, match=r"AAA.csv: column 'date' holds numbers from 1000 to 1029, which are not "
                                        r"yyyymmdd dates nor one unit of time since 1970"):
        load_files(tmp_path)


def test_two_files_for_one_symbol_are_refused_and_hidden_files_skipped(tmp_path, caplog):
    write_csv(make_bars(num_bars=30), tmp_path / "AAA.csv")
    write_csv(make_bars(num_bars=30, seed=1), tmp_path / ".AAA-backup.csv")
    with caplog.at_level("INFO"):
        panel = load_files(tmp_path)
    assert list(panel.symbols) == ["AAA"] and "skipped hidden file(s) ['.AAA-backup.csv']" in caplog.text
    make_bars(num_bars=30, seed=2).rename_axis("date").to_parquet(tmp_path / "AAA.parquet")
    with pytest.raises(DataError, match=r"holds 2 files for symbol 'AAA' \(AAA.csv, AAA.parquet\); keep one"):
        load_files(tmp_path)


def _said(caplog, text):
    return [record.getMessage() for record in caplog.records if text in record.getMessage()]


def test_a_traded_value_stands_in_for_a_missing_volume_said_once(tmp_path, caplog):
    for seed, (symbol, column) in enumerate((("AAA", "Value"), ("BBB", "value"), ("CCC", "Turnover"))):
        bars = make_bars(seed=seed)
        bars.rename(columns={"volume": column}).rename_axis("date").to_csv(tmp_path / f"{symbol}.csv")
    make_bars(seed=3).to_csv(tmp_path / "DDD.csv")
    with caplog.at_level(logging.WARNING, "keras_synapse.data"):
        panel = load_panel(str(tmp_path))
    np.testing.assert_allclose(panel["CCC"]["volume"], make_bars(seed=2)["volume"])
    said = _said(caplog, "traded value stands in")
    assert said == ["No volume column, so a traded value stands in for it (volume features then measure money traded, "
                    "not shares; --set columns=\"volume=NAME\" names another column): 'value' for AAA, BBB; "
                    "'turnover' for CCC."]


def _split_bars(seed=0, ratio=4.0, at=30):
    """Raw bars with a `ratio`:1 split at bar `at` (every price before it `ratio` times higher), and the
    adjusted close a vendor gives beside them."""
    adjusted = make_bars(seed=seed)
    raw = adjusted.copy()
    raw.iloc[:at, :4] *= ratio
    raw.iloc[:at, 4] /= ratio
    return raw.assign(**{"Adj Close": adjusted["close"]}), adjusted


def test_an_adjusted_close_column_is_used_and_said_once(tmp_path, caplog):
    for seed, symbol in enumerate(("AAA", "BBB")):
        _split_bars(seed)[0].rename_axis("Date").to_csv(tmp_path / f"{symbol}.csv")
    make_bars(seed=2).to_csv(tmp_path / "CCC.csv")
    with caplog.at_level(logging.WARNING, "keras_synapse.data"):
        panel = load_panel(str(tmp_path))
    for seed, symbol in enumerate(("AAA", "BBB")):
        np.testing.assert_allclose(panel[symbol].to_numpy(), _split_bars(seed)[1].to_numpy(), rtol=1e-12)
    assert _said(caplog, "Prices adjusted") == [
        "Prices adjusted by the adjusted close ('adj close') for AAA, BBB: open, high, low and close scaled by "
        "adjusted/close, volume by close/adjusted (not a traded value); --set adjust_prices=false keeps the raw "
        "prices."]
    assert not _said(caplog, "Split-like")

    # Opted out: the raw prices load, said once, and the split they hold is warned about.
    caplog.clear()
    with caplog.at_level(logging.WARNING, "keras_synapse.data"):
        raw = load_panel(str(tmp_path), adjust_prices=False)
    np.testing.assert_allclose(raw["AAA"]["close"], _split_bars(0)[0]["close"])
    assert _said(caplog, "adjust_prices=false") == [
        "adjust_prices=false: the adjusted-close column of AAA, BBB is not used; their raw prices load, so splits and "
        "dividends read as price moves."]
    said = _said(caplog, "Split-like")
    assert len(said) == 1 and "AAA at 2024-02-12 00:00:00+00:00 (open" in said[0] and "a 4:1 split?" in said[0]


def test_a_missing_adjusted_close_is_a_bad_bar(tmp_path):
    raw, _ = _split_bars()
    raw.iloc[7, raw.columns.get_loc("Adj Close")] = np.nan
    raw.rename_axis("Date").to_csv(tmp_path / "AAA.csv")
    with pytest.raises(DataError, match=r"Symbol 'AAA', column 'adj close': missing or non-positive adjusted close at "
                                        r"2024-01-10"):
        load_panel(str(tmp_path))
    assert len(load_panel(str(tmp_path), bad_bars="drop")["AAA"]) == 59
