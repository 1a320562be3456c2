"""Tests for the Alpaca source against recorded market data API responses.

A real HTTP server on 127.0.0.1 replays the recordings in tests/fixtures
(`/v2/stocks/bars` in two pages, `/v1beta3/crypto/us/bars`), and alpaca-py's
data clients are pointed at it with their `url_override`, so alpaca-py's own
request, pagination and header code runs unchanged.
"""

import http.server
import json
import logging
import threading
import traceback
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keras_synapse.data.alpaca import KEY_ID_VARIABLE, SECRET_KEY_VARIABLE, load_alpaca
from keras_synapse.data.cache import BarCache
from keras_synapse.errors import ConfigError, DataError, SourceUnavailableError

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures"
START, END = "2024-01-02", "2024-02-15"
FAKE_KEY_ID = "PKFAKEKEYID7Q3Z9X2M4"
FAKE_SECRET_KEY = "fakeSecretKey9w8V7u6T5s4R3q2P1o0N"
STOCK_PAGES = ("alpaca_stock_bars_AAPL_page1.json", "alpaca_stock_bars_AAPL_page2.json")
CRYPTO_RECORDING = "alpaca_crypto_bars_BTC_USD.json"


class AlpacaReplayServer(http.server.ThreadingHTTPServer):
    """Answers like Alpaca's data API, from the recordings.

    `received` lists (path, query, headers) for every request; `failures`
    holds HTTP statuses to answer with before the recordings are served.
    """

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _AlpacaHandler)
        self.received = []
        self.failures = []
        # A short poll interval makes `stop` quick.
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self):
        self.shutdown()
        self.server_close()


class _AlpacaHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query)
        self.server.received.append((parts.path, query, dict(self.headers)))
        if self.server.failures:
            status = self.server.failures.pop(0)
            return self._reply(status, {"code": status * 100000, "message": "replayed failure"})
        symbol = query.get("symbols", [""])[0]
        if parts.path == "/v2/stocks/bars" and symbol == "AAPL":
            page = 1 if "page_token" in query else 0
            return self._reply(200, json.loads((RECORDINGS / STOCK_PAGES[page]).read_text()))
        if parts.path == "/v1beta3/crypto/us/bars" and symbol == "BTC/USD":
            return self._reply(200, json.loads((RECORDINGS / CRYPTO_RECORDING).read_text()))
        # Alpaca answers a symbol it has no bars for with an empty mapping.
        return self._reply(200, {"bars": {}, "next_page_token": None})

    def _reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def recorded_bars(*names):
    """The recorded bars as Alpaca sent them, indexed by UTC timestamp."""
    bars = [bar for name in names for bar in next(iter(json.loads((RECORDINGS / name).read_text())["bars"].values()))]
    frame = pd.DataFrame(bars)
    return frame.set_index(pd.to_datetime(frame.pop("t"), utc=True))


@pytest.fixture
def server():
    server = AlpacaReplayServer()
    yield server
    server.stop()


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv(KEY_ID_VARIABLE, FAKE_KEY_ID)
    monkeypatch.setenv(SECRET_KEY_VARIABLE, FAKE_SECRET_KEY)


@pytest.fixture
def no_keys(monkeypatch):
    monkeypatch.delenv(KEY_ID_VARIABLE, raising=False)
    monkeypatch.delenv(SECRET_KEY_VARIABLE, raising=False)


def test_stock_bars_follow_pagination_with_keys_and_adjustment(server, keys, tmp_path):
    panel = load_alpaca(["AAPL"], start=START, end=END, cache=BarCache(tmp_path), url_override=server.url)

    bars, recorded = panel["AAPL"], recorded_bars(*STOCK_PAGES)
    assert len(bars) == len(recorded) == 31
    assert str(bars.index.tz) == "UTC"
    np.testing.assert_array_equal(bars.index, recorded.index)
    assert bars.index[0] == pd.Timestamp("2024-01-02 05:00", tz="UTC")
    for column, short_name in [("open", "o"), ("high", "h"), ("low", "l"), ("close", "c"), ("volume", "v")]:
        np.testing.assert_array_equal(bars[column], recorded[short_name])
    (first_path, first_query, headers), (_, second_query, _) = server.received
    assert first_path == "/v2/stocks/bars"
    assert first_query["symbols"] == ["AAPL"] and first_query["timeframe"] == ["1Day"]
    assert first_query["adjustment"] == ["all"]
    assert "page_token" not in first_query
    assert second_query["page_token"] == [json.loads((RECORDINGS / STOCK_PAGES[0]).read_text())["next_page_token"]]
    assert headers["APCA-API-KEY-ID"] == FAKE_KEY_ID


def test_crypto_pair_needs_no_keys(server, no_keys, tmp_path):
    panel = load_alpaca(["BTC/USD"], start=START, end=END, cache=BarCache(tmp_path), url_override=server.url)

    bars, recorded = panel["BTC/USD"], recorded_bars(CRYPTO_RECORDING)
    assert len(bars) == 21
    np.testing.assert_array_equal(bars.index, recorded.index)
    np.testing.assert_array_equal(bars["volume"], recorded["v"])  # fractional coins
    [(path, query, headers)] = server.received
    assert path == "/v1beta3/crypto/us/bars" and query["symbols"] == ["BTC/USD"]
    assert "APCA-API-KEY-ID" not in headers
    [cache_file] = (tmp_path / "alpaca").iterdir()
    assert cache_file.name.startswith("BTC_USD_1Day_")


def test_second_load_is_served_from_cache_with_server_stopped(server, keys, monkeypatch, tmp_path):
    cache = BarCache(tmp_path)
    first = load_alpaca(["AAPL", "BTC/USD"], start=START, end=END, cache=cache, url_override=server.url)
    server.stop()
    # Cached stock bars need no keys either.
    monkeypatch.delenv(KEY_ID_VARIABLE)
    monkeypatch.delenv(SECRET_KEY_VARIABLE)
    sleeps = []

    second = load_alpaca(
        ["AAPL", "BTC/USD"], start=START, end=END, cache=cache, url_override=server.url, sleep=sleeps.append
    )

    for symbol in ("AAPL", "BTC/USD"):
        pd.testing.assert_frame_equal(second[symbol], first[symbol])
    assert second.fingerprint() == first.fingerprint()
    assert sleeps == []


def test_uncached_symbol_with_server_unreachable_raises_source_unavailable(server, keys, tmp_path):
    server.stop()
    sleeps = []

    with pytest.raises(SourceUnavailableError) as error:
        load_alpaca(
            ["AAPL"], start=START, end=END, cache=BarCache(tmp_path), url_override=server.url, sleep=sleeps.append
        )

    assert str(error.value) == (
        f"alpaca: could not download 'AAPL' (network unreachable after 4 attempts) and no cached copy "
        f"in {tmp_path}. Connect once to fill the cache, or use --data sample / a CSV directory."
    )
    assert sleeps == [1.0, 2.0, 4.0]


def test_transient_server_errors_are_retried(server, keys, tmp_path):
    server.failures = [500, 503]
    sleeps = []

    panel = load_alpaca(
        ["AAPL"], start=START, end=END, cache=BarCache(tmp_path), url_override=server.url, sleep=sleeps.append
    )

    assert len(panel["AAPL"]) == 31
    assert sleeps == [1.0, 2.0]
    assert len(server.received) == 4  # two failures, then two pages


def test_missing_keys_raise_data_error_naming_the_variables(server, no_keys, tmp_path):
    with pytest.raises(DataError) as error:
        load_alpaca(["AAPL"], start=START, end=END, cache=BarCache(tmp_path), url_override=server.url)

    assert not isinstance(error.value, SourceUnavailableError)
    assert KEY_ID_VARIABLE in str(error.value) and SECRET_KEY_VARIABLE in str(error.value)
    assert server.received == []


def test_unknown_symbol_raises_data_error_naming_it_without_retrying(server, keys, tmp_path):
    sleeps = []

    with pytest.raises(DataError, match="'ZZZZNOTREAL'") as error:
        load_alpaca(
            ["ZZZZNOTREAL"], start=START, end=END, cache=BarCache(tmp_path), url_override=server.url,
            sleep=sleeps.append,
        )

    assert not isinstance(error.value, SourceUnavailableError)
    assert sleeps == []
    assert list(tmp_path.iterdir()) == []


def test_keys_never_appear_in_logs_errors_or_cache_files(server, keys, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cache = BarCache(tmp_path)
    options = {"start": START, "end": END, "cache": cache, "url_override": server.url, "sleep": lambda seconds: None}
    load_alpaca(["AAPL"], **options)
    server.failures = [403]
    with pytest.raises(DataError, match="HTTP 403") as refused:
        load_alpaca(["MSFT"], **options)
    server.failures = [500, 500]
    with pytest.raises(SourceUnavailableError, match="HTTP 500") as failing:
        load_alpaca(["MSFT"], retries=1, **options)
    server.stop()
    with pytest.raises(SourceUnavailableError, match="network unreachable") as unreachable:
        load_alpaca(["MSFT"], retries=1, **options)

    # The keys did reach the server, so their absence below means something.
    assert server.received[0][2]["APCA-API-KEY-ID"] == FAKE_KEY_ID
    assert server.received[0][2]["APCA-API-SECRET-KEY"] == FAKE_SECRET_KEY
    errors = "".join(
        "".join(traceback.format_exception(error.value)) for error in (refused, failing, unreachable)
    )
    cache_files = list(tmp_path.rglob("*"))
    assert len(cache_files) == 2  # the "alpaca" directory and AAPL's file
    for secret in (FAKE_KEY_ID, FAKE_SECRET_KEY):
        assert secret not in caplog.text
        assert secret not in errors
        for path in cache_files:
            assert secret not in str(path)
            assert path.is_dir() or secret.encode() not in path.read_bytes()


@pytest.mark.parametrize("timeframe", ["1d", "2Day", "15 Min"])
def test_malformed_timeframe_raises_config_error(timeframe):
    with pytest.raises(ConfigError, match=f"Received: timeframe='{timeframe}'"):
        load_alpaca(["AAPL"], timeframe=timeframe)


def test_an_interval_from_the_data_spec_reaches_alpaca_and_keys_the_cache(server, keys, tmp_path):
    """`--data alpaca:AAPL@1Hour`: the timeframe the client asks for; hourly and daily bars are cached apart."""
    from keras_synapse.data import network_spec

    _, symbols, timeframe = network_spec("alpaca:AAPL@1Hour")
    load_alpaca(symbols, timeframe=timeframe, start=START, end=END, cache=BarCache(tmp_path), url_override=server.url)
    assert {query["timeframe"][0] for _, query, _ in server.received} == {"1Hour"}
    load_alpaca(symbols, start=START, end=END, cache=BarCache(tmp_path), url_override=server.url)
    assert {query["timeframe"][0] for _, query, _ in server.received} == {"1Hour", "1Day"}
