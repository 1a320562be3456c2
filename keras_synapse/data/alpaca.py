"""Stock and crypto bars from Alpaca's market data API through `alpaca-py`.

Stock bars need an Alpaca account's API keys, read from the environment
variables `APCA_API_KEY_ID` and `APCA_API_SECRET_KEY` (free accounts work).
Crypto symbols, which contain a slash (`"BTC/USD"`), need no keys. The keys go
to Alpaca in request headers and nowhere else: not into logs, messages, cache
keys or file names.

Stock prices are adjusted for splits and dividends (`adjustment="all"`), like
the yfinance source, so corporate actions do not look like crashes. The feed
is Alpaca's default for the account: all US exchanges (SIP) with a paid data
plan, IEX alone without one. Daily stock bars are stamped at midnight New York
time (05:00 or 04:00 UTC), crypto bars at midnight UTC.
"""

import datetime
import functools
import os
import re
import time

import pandas as pd
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment
from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

from keras_synapse.data.cache import load_panel_through_cache
from keras_synapse.data.panel import standardize_columns
from keras_synapse.data.retry import TransientError
from keras_synapse.errors import ConfigError, DataError

SOURCE = "alpaca"
KEY_ID_VARIABLE = "APCA_API_KEY_ID"
SECRET_KEY_VARIABLE = "APCA_API_SECRET_KEY"

# Without a start Alpaca returns only the current day; its stock history
# begins in 2016, so a missing start asks for everything from there.
_EARLIEST_START = datetime.datetime(2016, 1, 1, tzinfo=datetime.timezone.utc)
_TIMEFRAME_PATTERN = re.compile(r"(\d+)(Min|Hour|Day|Week|Month)")


def load_alpaca(
    symbols,
    *,
    start=None,
    end=None,
    timeframe="1Day",
    cache=None,
    retries=3,
    url_override=None,
    sleep=time.sleep,
):
    """Loads bars for `symbols` from Alpaca, through `cache`.

    Each symbol is looked up in `cache` first and downloaded only when absent;
    downloads are retried with exponential backoff on network errors and
    server errors (HTTP 5xx and 429).

    Args:
        symbols: stock symbols (`"AAPL"`) and crypto pairs (`"BTC/USD"`), or
            a single one.
        start: the first date or timestamp (inclusive; naive means UTC), or
            `None` for all history since 2016. Defaults to `None`.
        end: the last timestamp (inclusive; naive means UTC, so a date is its
            midnight UTC and excludes that day's stock bar), or `None` for
            now. Defaults to `None`.
        timeframe: an Alpaca timeframe: `"<n>Min"` (1-59), `"<n>Hour"`
            (1-23), `"1Day"`, `"1Week"` or `"<n>Month"` (1, 2, 3, 6, 12).
            Defaults to `"1Day"`.
        cache: a `BarCache`, or `None` to always download. Defaults to `None`.
        retries: retries after a failed download, per symbol. Defaults to `3`.
        url_override: the base URL of the data API, e.g. a proxy or a test
            server. Defaults to `None` (Alpaca's own).
        sleep: the function that waits between retries. Defaults to
            `time.sleep`.

    Returns:
        A `Panel` with the symbols in the given order.

    Raises:
        ConfigError: for a malformed `timeframe`.
        SourceUnavailableError: when Alpaca cannot be reached for a symbol
            that is not cached.
        DataError: when stock keys are missing or refused, for a symbol
            without bars, or for invalid bars.
    """
    bar_timeframe = _parse_timeframe(timeframe)
    return load_panel_through_cache(
        cache,
        symbols,
        lambda symbol: _download(symbol, start, end, bar_timeframe, url_override),
        source=SOURCE, interval=timeframe, start=start, end=end, retries=retries, sleep=sleep,
    )


def _parse_timeframe(timeframe):
    match = _TIMEFRAME_PATTERN.fullmatch(str(timeframe))
    problem = "expected a count and a unit, e.g. '1Day', '15Min' or '1Hour'"
    if match is not None:
        try:
            return TimeFrame(int(match[1]), TimeFrameUnit(match[2]))
        except ValueError as error:  # an amount the unit does not allow, e.g. 2Day
            problem = str(error)
    raise ConfigError(f"`timeframe` is not an Alpaca timeframe ({problem}). Received: timeframe={timeframe!r}")


def keys_from_environment(refusal):
    """`(key id, secret key)` from `APCA_API_KEY_ID` and `APCA_API_SECRET_KEY`.

    Args:
        refusal: builds the error to raise from the names of the variables
            not set (each caller says what it needed the keys for).
    """
    missing = [name for name in (KEY_ID_VARIABLE, SECRET_KEY_VARIABLE) if not os.environ.get(name)]
    if missing:
        raise refusal(missing)
    return os.environ[KEY_ID_VARIABLE], os.environ[SECRET_KEY_VARIABLE]


def stock_keys():
    """The keys stock bars need, or a `DataError` naming the variables not set."""
    return keys_from_environment(lambda missing: DataError(
        f"{SOURCE}: stock bars need Alpaca API keys in the environment variables {KEY_ID_VARIABLE} "
        f"and {SECRET_KEY_VARIABLE}; not set: {', '.join(missing)}. "
        "Crypto pairs such as BTC/USD need no keys."))


def _download(symbol, start, end, timeframe, url_override):
    request_fields = {
        "symbol_or_symbols": symbol,
        "timeframe": timeframe,
        "start": pd.Timestamp(start).to_pydatetime() if start is not None else _EARLIEST_START,
        "end": pd.Timestamp(end).to_pydatetime() if end is not None else None,
    }
    if "/" in symbol:
        client = CryptoHistoricalDataClient(raw_data=True, url_override=url_override)
        get_bars = functools.partial(client.get_crypto_bars, CryptoBarsRequest(**request_fields))
    else:
        key_id, secret_key = stock_keys()
        client = StockHistoricalDataClient(key_id, secret_key, raw_data=True, url_override=url_override)
        get_bars = functools.partial(
            client.get_stock_bars, StockBarsRequest(adjustment=Adjustment.ALL, **request_fields)
        )
    try:
        # alpaca-py follows `next_page_token` itself and merges the pages.
        bars_by_symbol = get_bars()
    except APIError as error:
        status = error.status_code
        if status is None or status == 429 or status >= 500:
            raise TransientError(f"HTTP {status} from Alpaca") from None
        hint = f" Check {KEY_ID_VARIABLE} and {SECRET_KEY_VARIABLE}." if status in (401, 403) else ""
        raise DataError(
            f"{SOURCE}: request for '{symbol}' refused (HTTP {status}: {str(error)[:200]}).{hint}"
        ) from None
    bars = bars_by_symbol.get(symbol)
    if not bars:
        raise DataError(
            f"{SOURCE}: no bars for symbol '{symbol}' (timeframe {timeframe}, start {start}, end {end}); "
            "is the symbol right?"
        )
    frame = pd.DataFrame(bars).rename(columns={"t": "timestamp"})
    return standardize_columns(frame, where=f"{SOURCE} '{symbol}'")
