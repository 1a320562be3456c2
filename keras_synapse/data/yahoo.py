"""Bars from Yahoo Finance through the `yfinance` package, cached on disk.

Prices are adjusted for splits and dividends (`auto_adjust=True`): the close
is Yahoo's adjusted close and open, high and low are scaled by the same
factor, so an ex-dividend date or a split does not look like a crash to a
model. Volume is as traded. Daily bars are stamped at midnight exchange time,
which is 05:00 or 04:00 UTC for New York.
"""

import json
import time
import warnings

import yfinance
from pandas.errors import Pandas4Warning
from yfinance.data import YfData
from yfinance.exceptions import YFDataException, YFRateLimitError, YFTickerMissingError

from keras_synapse.data.cache import load_panel_through_cache
from keras_synapse.data.panel import standardize_columns
from keras_synapse.data.retry import TransientError
from keras_synapse.errors import DataError

SOURCE = "yfinance"


# The intervals Yahoo serves (yfinance's `history(interval=...)`).
INTERVALS = ("1m", "2m", "5m", "15m", "30m", "60m", "90m", "1h", "1d", "5d", "1wk", "1mo", "3mo")


def check_interval(interval):
    """`interval` if Yahoo serves it, else a `ConfigError` listing those it does."""
    if interval not in INTERVALS:
        raise DataError(f"`--data yfinance:...@INTERVAL` must name a Yahoo interval, one of {', '.join(INTERVALS)}. "
                          f"Received: {interval!r}")
    return interval


def load_yfinance(
    symbols, *, start=None, end=None, interval="1d", cache=None, retries=3, session=None, sleep=time.sleep
):
    """Loads bars for `symbols` from Yahoo Finance, through `cache`.

    Each symbol is looked up in `cache` first and downloaded only when absent;
    downloads are retried with exponential backoff on network errors and
    server errors.

    Args:
        symbols: Yahoo symbols, e.g. `["AAPL", "MSFT"]`, or a single one.
        start: the first date or timestamp (inclusive), or `None` for all the
            history Yahoo has at this interval. Defaults to `None`.
        end: the end date or timestamp (exclusive), or `None` for now.
            Defaults to `None`.
        interval: a Yahoo interval: `"1m"`, `"5m"`, `"1h"`, `"1d"`, `"1wk"`,
            `"1mo"` and the others yfinance lists. Defaults to `"1d"`.
        cache: a `BarCache`, or `None` to always download. Defaults to `None`.
        retries: retries after a failed download, per symbol. Defaults to `3`.
        session: a `requests` or `curl_cffi` session for yfinance to send
            requests through, e.g. one with a proxy. yfinance keeps it for its
            later requests too. Defaults to `None` (yfinance's own session).
        sleep: the function that waits between retries. Defaults to
            `time.sleep`.

    Returns:
        A `Panel` with the symbols in the given order.

    Raises:
        SourceUnavailableError: when Yahoo cannot be reached for a symbol that
            is not cached.
        DataError: for an unknown or delisted symbol, a range without bars,
            or invalid bars.
    """
    return load_panel_through_cache(
        cache,
        symbols,
        lambda symbol: _download(symbol, start, end, interval, session),
        source=SOURCE, interval=interval, start=start, end=end, retries=retries, sleep=sleep,
    )


def _download(symbol, start, end, interval, session):
    ticker = yfinance.Ticker(symbol, session=session)
    try:
        history = _history(ticker, start, end, interval)
    except YFTickerMissingError as error:
        raise DataError(f"{SOURCE}: no bars for symbol '{symbol}' ({error}).") from None
    except YFRateLimitError:
        raise TransientError("rate limited by Yahoo") from None
    except YFDataException as error:
        raise TransientError(f"Yahoo error: {error}") from None
    except json.JSONDecodeError:
        # Yahoo answers overload with an HTML error page where JSON belongs.
        raise TransientError("unreadable reply from Yahoo (not JSON)") from None
    except OSError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if not status:
            # No HTTP reply at all (curl_cffi reports status 0): the network
            # itself, retried and then reported as unreachable.
            raise
        if status == 429 or status >= 500:
            raise TransientError(f"HTTP {status} from Yahoo") from None
        raise DataError(
            f"{SOURCE}: Yahoo refused the request for '{symbol}' (HTTP {status}); is the symbol right?"
        ) from None
    if history.empty:
        raise DataError(
            f"{SOURCE}: no bars for symbol '{symbol}' (interval {interval!r}, start {start}, end {end})."
        )
    return standardize_columns(history, where=f"{SOURCE} '{symbol}'")


def _history(ticker, start, end, interval):
    # yfinance memoizes replies for past date ranges for the whole process,
    # error pages included, so every retry would replay the same HTTP 500.
    # BarCache is the cache; each attempt asks Yahoo afresh.
    YfData.cache_get.cache_clear()
    # By default yfinance logs errors and returns an empty frame, which makes
    # an unreachable network look the same as an unknown symbol.
    hide_exceptions = yfinance.config.debug.hide_exceptions
    yfinance.config.debug.hide_exceptions = False
    try:
        with warnings.catch_warnings():
            # yfinance 1.7 still passes `inplace=`, which pandas 3.1 deprecates:
            # five warnings per symbol that a user cannot act on.
            warnings.filterwarnings("ignore", category=Pandas4Warning, module="yfinance")
            # period="max" makes a missing start mean "all history"; yfinance
            # would otherwise fetch a single month.
            return ticker.history(
                period="max", start=start, end=end, interval=interval, auto_adjust=True, actions=False
            )
    finally:
        yfinance.config.debug.hide_exceptions = hide_exceptions
