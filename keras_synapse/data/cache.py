"""An on-disk Parquet cache of downloaded bars, so network sources work offline.

One file per (source, symbol, interval, start, end) request, written
atomically: a crash or a concurrent run can leave a stray temporary file but
never a half-written cache entry. `load_through_cache` is the read-through
every network source uses: cache first, then download with retries, then
validate and store.

An open-ended request (`end=None`) is cached as it was first downloaded and
served from then on, which keeps experiments reproducible; delete the file, or
pass an explicit `end`, for newer bars.
"""

import functools
import hashlib
import logging
import os
import re
import tempfile
import time
from pathlib import Path

import pandas as pd

from keras_synapse.data.panel import Panel, validate_bars
from keras_synapse.data.retry import TransientError, call_with_retries
from keras_synapse.errors import ConfigError, SourceUnavailableError

logger = logging.getLogger(__name__)

CACHE_DIRECTORY_VARIABLE = "KERAS_SYNAPSE_CACHE"

# Symbols such as "BTC/USD" or "^GSPC" must not become paths or odd names; the
# digest in the file name keeps sanitized symbols apart.
_UNSAFE_FILE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._^=-]")


def default_cache_directory():
    """Returns `$KERAS_SYNAPSE_CACHE`, or `~/.cache/keras_synapse` when unset."""
    return Path(os.environ.get(CACHE_DIRECTORY_VARIABLE) or Path.home() / ".cache" / "keras_synapse")


class BarCache:
    """Bars on disk, one Parquet file per download request.

    Entries are long-format frames: one row per bar, a `timestamp` column and
    the bar columns. Every method takes the entry's key: `source` (e.g.
    `"yfinance"`), `symbol`, `interval` (as the source spells it), `start` and
    `end` (dates, timestamps or `None`). `start` and `end` are normalized, so
    `"2024-01-01"` and `datetime(2024, 1, 1)` name the same entry.

    Args:
        directory: where the files live; created on the first `put`.
            Defaults to `None` (`default_cache_directory()`).

    Example:

    >>> import tempfile
    >>> cache = BarCache(tempfile.mkdtemp())
    >>> cache.get("yfinance", "AAPL", "1d", "2024-01-01", None) is None
    True
    """

    def __init__(self, directory=None):
        self.directory = Path(directory if directory is not None else default_cache_directory()).expanduser()

    def __repr__(self):
        return f"BarCache({str(self.directory)!r})"

    def path(self, source, symbol, interval, start, end):
        """Returns the file that holds (or would hold) this entry."""
        key = "\n".join([source, symbol, interval, _time_key("start", start), _time_key("end", end)])
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        readable = _UNSAFE_FILE_NAME_CHARACTERS.sub("_", f"{symbol}_{interval}")
        return self.directory / source / f"{readable}_{digest}.parquet"

    def get(self, source, symbol, interval, start, end):
        """Returns the cached long-format frame, or `None` when absent.

        An unreadable file (damaged, or written by an incompatible version)
        is logged and treated as absent, so the next download replaces it.

        Raises:
            ConfigError: for a `start` or `end` that is not a date.
        """
        path = self.path(source, symbol, interval, start, end)
        if not path.exists():
            return None
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as error:
            logger.warning("Ignoring unreadable cache file %s (%s).", path, error)
            return None

    def put(self, source, symbol, interval, start, end, frame):
        """Writes a long-format frame atomically and returns its path.

        Raises:
            ConfigError: for a `start` or `end` that is not a date.
            Exception: whatever writing Parquet raises; no partial file is left.
        """
        path = self.path(source, symbol, interval, start, end)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The temporary file sits in the same directory so that os.replace is
        # a rename on one file system, which is atomic.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        try:
            frame.to_parquet(temporary, index=False)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path


def _time_key(name, value):
    if value is None:
        return "open"
    try:
        return pd.Timestamp(value).isoformat()
    except (TypeError, ValueError):
        raise ConfigError(f"`{name}` must be a date or timestamp. Received: {name}={value!r}") from None


def load_through_cache(cache, download, *, source, symbol, interval, start, end, retries=3, sleep=time.sleep):
    """Returns one symbol's bars from `cache`, or downloads, validates and caches them.

    Args:
        cache: a `BarCache`, or `None` to always download.
        download: a callable taking no arguments that returns the symbol's
            bars as a frame with a DatetimeIndex (see `standardize_columns`).
            It raises `OSError` or `TransientError` for failures worth
            retrying and `DataError` for the rest.
        source: the source name, e.g. `"yfinance"`; part of the cache key.
        symbol: the symbol; part of the cache key.
        interval: the bar interval as the source spells it; part of the key.
        start: the requested start, or `None`; part of the key.
        end: the requested end, or `None`; part of the key.
        retries: retries after the first failed download. Defaults to `3`.
        sleep: the function that waits between retries. Defaults to
            `time.sleep`.

    Returns:
        The symbol's bars in canonical form (see `validate_bars`).

    Raises:
        SourceUnavailableError: when every download attempt failed and there
            is no cached copy.
        DataError: for bars that fail validation (they are not cached) or a
            failure `download` reports as permanent.
    """
    if cache is not None:
        cached = cache.get(source, symbol, interval, start, end)
        if cached is not None:
            logger.info("%s: '%s' served from %s.", source, symbol, cache.directory)
            return cached.set_index("timestamp")
    try:
        frame = call_with_retries(
            download, retries=retries, sleep=sleep, description=f"{source} download of '{symbol}'"
        )
    except (OSError, TransientError) as error:
        reason = str(error) if isinstance(error, TransientError) else "network unreachable"
        attempts = f"{retries + 1} attempt" + ("s" if retries else "")
        where = f"no cached copy in {cache.directory}" if cache is not None else "no cache in use"
        raise SourceUnavailableError(
            f"{source}: could not download '{symbol}' ({reason} after {attempts}) and {where}. "
            "Connect once to fill the cache, or use --data sample / a CSV directory."
        ) from error
    bars = validate_bars(frame, symbol)  # canonical microsecond index: cache and network hash alike
    if cache is not None:
        cache.put(source, symbol, interval, start, end, bars.reset_index())
    return bars


def load_panel_through_cache(cache, symbols, download, *, source, interval, start, end, retries=3, sleep=time.sleep):
    """`load_through_cache` for each of `symbols`, as one validated `Panel`.

    Args:
        cache: a `BarCache`, or `None` to always download.
        symbols: a symbol or a list of symbols.
        download: a callable taking a symbol and returning its bars (see
            `load_through_cache`).
        source, interval, start, end, retries, sleep: as for
            `load_through_cache`.
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    return Panel(
        {
            symbol: load_through_cache(
                cache, functools.partial(download, symbol), source=source, symbol=symbol, interval=interval,
                start=start, end=end, retries=retries, sleep=sleep,
            )
            for symbol in symbols
        }
    )
