"""Tests for the on-disk bar cache and the read-through every network source uses."""

import datetime
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keras_synapse.data.cache import CACHE_DIRECTORY_VARIABLE, BarCache, load_through_cache
from keras_synapse.data.retry import TransientError
from keras_synapse.errors import ConfigError, DataError, SourceUnavailableError

KEY = ("yfinance", "AAPL", "1d", "2024-01-01", "2024-02-01")


def daily_bars(num_bars=5):
    index = pd.date_range("2024-01-02", periods=num_bars, freq="D", tz="UTC", name="timestamp")
    close = 100.0 + np.arange(num_bars)
    return pd.DataFrame(
        {"open": close - 0.5, "high": close + 1, "low": close - 1, "close": close, "volume": 1000.0 + close},
        index=index,
    )


def files_under(directory):
    return sorted(path for path in Path(directory).rglob("*") if path.is_file())


def test_get_returns_none_when_absent(tmp_path):
    assert BarCache(tmp_path).get(*KEY) is None


def test_put_then_get_round_trips_a_long_frame(tmp_path):
    cache = BarCache(tmp_path)
    frame = daily_bars().reset_index()

    path = cache.put(*KEY, frame)

    pd.testing.assert_frame_equal(cache.get(*KEY), frame)
    assert files_under(tmp_path) == [path]  # no temporary file left behind
    assert path.parent == tmp_path / "yfinance" and path.suffix == ".parquet"


def test_start_and_end_spellings_name_the_same_entry(tmp_path):
    cache = BarCache(tmp_path)
    spellings = ["2024-01-01", datetime.date(2024, 1, 1), datetime.datetime(2024, 1, 1), pd.Timestamp("2024-01-01")]

    assert len({cache.path("yfinance", "AAPL", "1d", start, None) for start in spellings}) == 1


def test_each_part_of_the_key_names_a_different_entry(tmp_path):
    cache = BarCache(tmp_path)
    variants = [
        KEY,
        ("alpaca", *KEY[1:]),
        (KEY[0], "MSFT", *KEY[2:]),
        (*KEY[:2], "1h", *KEY[3:]),
        (*KEY[:3], None, KEY[4]),
        (*KEY[:4], None),
    ]

    assert len({cache.path(*variant) for variant in variants}) == len(variants)


def test_symbols_with_path_characters_stay_one_file_name(tmp_path):
    cache = BarCache(tmp_path)

    slash = cache.path("alpaca", "BTC/USD", "1Day", None, None)
    underscore = cache.path("alpaca", "BTC_USD", "1Day", None, None)

    assert slash.parent == tmp_path / "alpaca"
    assert slash.name.startswith("BTC_USD_1Day_")
    assert slash != underscore


def test_default_directory_comes_from_environment_or_home(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIRECTORY_VARIABLE, str(tmp_path / "chosen"))
    assert BarCache().directory == tmp_path / "chosen"

    monkeypatch.delenv(CACHE_DIRECTORY_VARIABLE)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert BarCache().directory == tmp_path / ".cache" / "keras_synapse"


def test_failed_write_keeps_the_previous_entry_and_leaves_no_partial_file(tmp_path):
    cache = BarCache(tmp_path)
    good = daily_bars().reset_index()
    path = cache.put(*KEY, good)
    unwritable = good.assign(close=[1.0, "two", 3.0, 4.0, 5.0])  # Parquet needs one type per column

    with pytest.raises(Exception):
        cache.put(*KEY, unwritable)

    pd.testing.assert_frame_equal(cache.get(*KEY), good)
    assert files_under(tmp_path) == [path]


def test_unreadable_file_is_treated_as_absent(tmp_path, caplog):
    cache = BarCache(tmp_path)
    path = cache.path(*KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")

    assert cache.get(*KEY) is None
    assert "Ignoring unreadable cache file" in caplog.text


def test_malformed_start_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="Received: start='next tuesday'"):
        BarCache(tmp_path).get("yfinance", "AAPL", "1d", "next tuesday", None)


class CountingDownload:
    """Stands in for a source: returns `result` or raises it, counting calls."""

    def __init__(self, result):
        self.result = result
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def load(cache, download, **options):
    return load_through_cache(
        cache, download, source="yfinance", symbol="AAPL", interval="1d", start="2024-01-01", end="2024-02-01",
        **options,
    )


def test_load_through_cache_downloads_once_then_serves_the_cache(tmp_path):
    cache, download = BarCache(tmp_path), CountingDownload(daily_bars())

    first = load(cache, download)
    second = load(cache, download)

    assert download.calls == 1
    pd.testing.assert_frame_equal(second, first)
    np.testing.assert_array_equal(first.index, daily_bars().index)
    assert first.index.unit == "us"


def test_load_through_cache_retries_with_backoff_then_reports_unavailable(tmp_path):
    download, sleeps = CountingDownload(ConnectionRefusedError("refused")), []

    with pytest.raises(SourceUnavailableError) as error:
        load(BarCache(tmp_path), download, sleep=sleeps.append)

    assert download.calls == 4
    assert sleeps == [1.0, 2.0, 4.0]
    assert str(error.value) == (
        f"yfinance: could not download 'AAPL' (network unreachable after 4 attempts) and no cached copy "
        f"in {tmp_path}. Connect once to fill the cache, or use --data sample / a CSV directory."
    )


def test_load_through_cache_names_the_server_error_without_a_cache():
    download = CountingDownload(TransientError("HTTP 503 from Yahoo"))

    with pytest.raises(SourceUnavailableError, match=r"\(HTTP 503 from Yahoo after 1 attempt\) and no cache in use"):
        load(None, download, retries=0)
    assert download.calls == 1


def test_load_through_cache_does_not_retry_permanent_errors(tmp_path):
    download, sleeps = CountingDownload(DataError("no bars for symbol 'AAPL'")), []

    with pytest.raises(DataError, match="no bars"):
        load(BarCache(tmp_path), download, sleep=sleeps.append)
    assert download.calls == 1 and sleeps == []


def test_load_through_cache_does_not_cache_invalid_bars(tmp_path):
    bars = daily_bars()
    bars.iloc[2, bars.columns.get_loc("close")] = np.nan

    with pytest.raises(DataError, match="Symbol 'AAPL', column 'close'"):
        load(BarCache(tmp_path), CountingDownload(bars))
    assert files_under(tmp_path) == []


def test_load_through_cache_rejects_negative_retries(tmp_path):
    download = CountingDownload(daily_bars())

    with pytest.raises(ConfigError, match=re.escape("`retries` must be >= 0. Received: retries=-1")):
        load(BarCache(tmp_path), download, retries=-1)
    assert download.calls == 0
