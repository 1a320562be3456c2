"""Tests for the yfinance source against recorded Yahoo responses.

A real HTTP server on 127.0.0.1 replays the recordings in tests/fixtures (chart
API v8 replies, Yahoo's "Not Found" replies). yfinance gets a `requests`
session whose transport sends every https request to that server instead of
the host in its URL, so yfinance's own request, cookie, crumb and parsing
code runs unchanged and nothing reaches the internet. One test uses
yfinance's default backend, curl_cffi, behind a proxy on a closed local port.
"""

import http.server
import json
import socket
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import yfinance
from curl_cffi import requests as curl_requests

from keras_synapse.data.cache import BarCache
from keras_synapse.data.yahoo import load_yfinance
from keras_synapse.errors import DataError, SourceUnavailableError

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures"
START, END = "2024-01-01", "2024-02-15"


class YahooReplayServer(http.server.ThreadingHTTPServer):
    """Answers like Yahoo's hosts, from the recordings.

    `paths` lists every request path received; `failures` holds HTTP statuses
    to answer chart requests with before the recordings are served.
    """

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _YahooHandler)
        self.paths = []
        self.failures = []
        # A short poll interval makes `stop` quick.
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    @property
    def port(self):
        return self.server_address[1]

    def stop(self):
        self.shutdown()
        self.server_close()


class _YahooHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.server.paths.append(self.path)
        path = urllib.parse.urlsplit(self.path).path
        if path == "/v1/test/getcrumb":
            return self._reply(200, b"replay-crumb", "text/plain")
        if path.startswith("/v8/finance/chart/"):
            if self.server.failures:
                return self._reply(self.server.failures.pop(0), b"<html>Server Error</html>", "text/html")
            recording = RECORDINGS / f"yahoo_chart_{path.rsplit('/', 1)[1]}.json"
            if recording.exists():
                return self._reply(200, recording.read_bytes(), "application/json")
            return self._reply(404, (RECORDINGS / "yahoo_chart_not_found.json").read_bytes(), "application/json")
        if path.startswith("/v10/finance/quoteSummary/"):
            body = (RECORDINGS / "yahoo_quote_summary_not_found.json").read_bytes()
            return self._reply(404, body, "application/json")
        # fc.yahoo.com (cookie) and consent pages: nothing to hand out.
        return self._reply(404, b"Not Found", "text/plain")

    def _reply(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _ToReplayServer(requests.adapters.HTTPAdapter):
    """Sends each request to 127.0.0.1:`port`, keeping its path and query."""

    def __init__(self, port):
        super().__init__()
        self.port = port

    def send(self, request, **kwargs):
        parts = urllib.parse.urlsplit(request.url)
        request.url = urllib.parse.urlunsplit(("http", f"127.0.0.1:{self.port}", parts.path, parts.query, ""))
        return super().send(request, **kwargs)


def replay_session(port):
    session = requests.Session()
    session.mount("https://", _ToReplayServer(port))
    return session


def recorded_chart(symbol):
    """The recorded bars as Yahoo sent them, indexed by UTC session-open time."""
    result = json.loads((RECORDINGS / f"yahoo_chart_{symbol}.json").read_text())["chart"]["result"][0]
    frame = pd.DataFrame(result["indicators"]["quote"][0])
    frame["adjclose"] = result["indicators"]["adjclose"][0]["adjclose"]
    frame.index = pd.to_datetime(result["timestamp"], unit="s", utc=True)
    return frame


@pytest.fixture(autouse=True, scope="module")
def yfinance_files_in_temporary_directory(tmp_path_factory):
    # yfinance keeps time zones and cookies in SQLite files, by default in
    # ~/.cache. It opens them once per process, so this holds for the module.
    yfinance.set_tz_cache_location(str(tmp_path_factory.mktemp("yfinance")))


@pytest.fixture
def server():
    server = YahooReplayServer()
    yield server
    server.stop()


def test_load_gives_adjusted_bars_with_utc_index(server, tmp_path):
    panel = load_yfinance(
        ["AAPL", "MSFT"], start=START, end=END, cache=BarCache(tmp_path), session=replay_session(server.port)
    )

    assert panel.symbols == ("AAPL", "MSFT")
    for symbol in panel.symbols:
        bars, recorded = panel[symbol], recorded_chart(symbol)
        assert len(bars) == len(recorded) == 31
        assert str(bars.index.tz) == "UTC"
        # Daily bars are stamped at midnight New York time, whatever hour the session opened.
        expected_index = recorded.index.tz_convert("America/New_York").normalize().tz_convert("UTC")
        np.testing.assert_array_equal(bars.index, expected_index)
        np.testing.assert_allclose(bars["close"], recorded["adjclose"])
        adjustment = recorded["adjclose"] / recorded["close"]
        for column in ("open", "high", "low"):
            np.testing.assert_allclose(bars[column], recorded[column] * adjustment)
        np.testing.assert_array_equal(bars["volume"], recorded["volume"])
    assert panel["AAPL"].index[0] == pd.Timestamp("2024-01-02 05:00", tz="UTC")
    # Before the recorded ex-dividend date (2024-02-09) prices are adjusted down.
    assert panel["AAPL"]["close"].iloc[0] < recorded_chart("AAPL")["close"].iloc[0]


def test_second_load_is_served_from_cache_with_server_stopped(server, tmp_path):
    cache, session = BarCache(tmp_path), replay_session(server.port)
    first = load_yfinance(["AAPL"], start=START, end=END, cache=cache, session=session)
    server.stop()
    sleeps = []

    second = load_yfinance(["AAPL"], start=START, end=END, cache=cache, session=session, sleep=sleeps.append)

    pd.testing.assert_frame_equal(second["AAPL"], first["AAPL"])
    assert second.fingerprint() == first.fingerprint()
    assert sleeps == []


def test_uncached_symbol_with_server_unreachable_raises_source_unavailable(server, tmp_path):
    server.stop()
    sleeps = []

    with pytest.raises(SourceUnavailableError) as error:
        load_yfinance(
            ["AAPL"], start=START, end=END, cache=BarCache(tmp_path), retries=2,
            session=replay_session(server.port), sleep=sleeps.append,
        )

    assert str(error.value) == (
        f"yfinance: could not download 'AAPL' (network unreachable after 3 attempts) and no cached copy "
        f"in {tmp_path}. Connect once to fill the cache, or use --data sample / a CSV directory."
    )
    assert sleeps == [1.0, 2.0]


def test_unreachable_network_through_curl_cffi_raises_source_unavailable(tmp_path):
    # yfinance's default backend reports a failed connection with HTTP status
    # 0; a proxy on a closed local port makes every connection fail.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    session = curl_requests.Session(impersonate="chrome", proxy=f"http://127.0.0.1:{closed_port}")
    sleeps = []

    with pytest.raises(SourceUnavailableError, match=r"\(network unreachable after 2 attempts\)"):
        load_yfinance(
            ["AAPL"], start=START, end=END, cache=BarCache(tmp_path), retries=1, session=session,
            sleep=sleeps.append,
        )
    assert sleeps == [1.0]


def test_transient_server_error_is_retried(server, tmp_path):
    # yfinance re-sends a failed request once by itself, so two HTTP 500s fail
    # one whole attempt.
    server.failures = [500, 500]
    sleeps = []

    panel = load_yfinance(
        ["AAPL"], start=START, end=END, cache=BarCache(tmp_path), session=replay_session(server.port),
        sleep=sleeps.append,
    )

    assert len(panel["AAPL"]) == 31
    assert sleeps == [1.0]
    # The retry reached the server again (yfinance's in-process memo of
    # replies would otherwise replay the error): two failures, then the bars,
    # after a time-zone probe unless an earlier test cached the time zone.
    chart_requests = [path for path in server.paths if path.startswith("/v8/finance/chart/AAPL")]
    assert len(chart_requests) in (3, 4)
    assert "period1=" in chart_requests[-1]


def test_persistent_server_error_raises_source_unavailable(server, tmp_path):
    server.failures = [500] * 10
    sleeps = []

    with pytest.raises(SourceUnavailableError, match=r"\(unreadable reply from Yahoo \(not JSON\) after 2 attempts\)"):
        load_yfinance(
            ["AAPL"], start=START, end=END, cache=BarCache(tmp_path), retries=1,
            session=replay_session(server.port), sleep=sleeps.append,
        )
    assert sleeps == [1.0]


def test_unknown_symbol_raises_data_error_naming_it_without_retrying(server, tmp_path):
    sleeps = []

    with pytest.raises(DataError, match="'ZZZZNOTREAL'") as error:
        load_yfinance(
            ["ZZZZNOTREAL"], start=START, end=END, cache=BarCache(tmp_path), session=replay_session(server.port),
            sleep=sleeps.append,
        )

    assert not isinstance(error.value, SourceUnavailableError)
    assert sleeps == []
    assert list(tmp_path.iterdir()) == []

