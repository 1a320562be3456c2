"""The validated Panel: symbol -> OHLCV bars with a UTC index.

Every source (files, yfinance, Alpaca, the offline sample) ends in `Panel`, and
`Panel` refuses bars that would silently corrupt features or labels. Checks run
at this boundary so that nothing downstream (features, windows, TensorFlow)
ever sees a NaN price or an unsorted index.
"""

import hashlib
import logging
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from keras_synapse.data.plausibility import check_plausible
from keras_synapse.errors import DataError

logger = logging.getLogger(__name__)

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
DATE_COLUMN_NAMES = ("timestamp", "datetime", "date", "time", "index")
COLUMN_ALIASES = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "vol": "volume"}

# Open and close may sit a hair outside [low, high] after float rounding in a
# vendor's adjustment; anything beyond this relative tolerance is a real error.
_RANGE_TOLERANCE = 1e-9


def standardize_columns(frame, where):
    """Lower-cases column names and moves the date column into a DatetimeIndex.

    Args:
        frame: a `pandas.DataFrame` as read from a file or an API.
        where: a description of the origin used in error messages, e.g. a path.

    Returns:
        A new frame with lower-case OHLCV column names and a DatetimeIndex
        named `timestamp` (time zone not yet normalized).

    Raises:
        DataError: when no date column or index can be found.
    """
    frame = frame.rename(columns=lambda name: str(name).strip().lower().replace("_", " "))
    frame = frame.rename(columns=lambda name: COLUMN_ALIASES.get(name, name))
    if not isinstance(frame.index, pd.DatetimeIndex):
        date_column = next((name for name in DATE_COLUMN_NAMES if name in frame.columns), None)
        first = frame.columns[0] if len(frame.columns) else None
        if date_column is None and first is not None and (first == "" or first.startswith("unnamed")):
            # `df.to_csv()` of a frame indexed by date writes the index as a first column without a name.
            date_column = first
        if date_column is None:
            raise DataError(
                f"{where}: no date column. Expected one of {list(DATE_COLUMN_NAMES)} "
                f"(any case), or an unnamed first column of dates. Received columns: {list(frame.columns)}"
            )
        frame = frame.set_index(date_column)
        frame.index = _parse_timestamps(frame.index, where, date_column)
    frame.index.name = "timestamp"
    return frame


def _parse_timestamps(values, where, column):
    if pd.api.types.is_numeric_dtype(values):
        return _numeric_timestamps(values, where, column)
    mixed_zones = DataError(
        f"{where}: column '{column}' mixes time zones (first value {values[0]!r}). "
        "Write all timestamps in one zone, preferably UTC."
    )
    try:
        parsed = pd.to_datetime(values, utc=False)
    except (ValueError, TypeError) as error:
        if "mixed timezones" in str(error).lower():
            return _one_zone_with_daylight_saving(values, where, column, mixed_zones)
        if "tz-naive and tz-aware" in str(error).lower():
            raise mixed_zones from None
        raise DataError(f"{where}: column '{column}' is not a date/time column ({error}).") from None
    if not isinstance(parsed, pd.DatetimeIndex):
        # Older pandas return an object Index when rows carry different UTC offsets.
        return _one_zone_with_daylight_saving(values, where, column, mixed_zones)
    return parsed


_UTC_OFFSET = r"([+-])(\d{2}):?(\d{2})$"


def _one_zone_with_daylight_saving(values, where, column, mixed_zones):
    # One zone with daylight saving time (pandas writes a New York index as -05:00 and -04:00) shows
    # exactly two UTC offsets one hour apart; every instant is still exact, so it converts to UTC.
    # Any other mixture is more likely bars stamped in different zones, which no rule can untangle.
    offsets = pd.Series(values, dtype="string").str.extract(_UTC_OFFSET).dropna()
    minutes = set((offsets[0].map({"+": 1, "-": -1}) * (offsets[1].astype(int) * 60 + offsets[2].astype(int))))
    if len(offsets) != len(values) or len(minutes) != 2 or abs(max(minutes) - min(minutes)) != 60:
        raise mixed_zones from None
    logger.info("%s: column '%s' has the UTC offsets %s (one zone's daylight saving time); converted to UTC.",
                where, column, sorted(_format_offset(value) for value in minutes))
    return pd.to_datetime(values, utc=True)


def _format_offset(minutes):
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# Epoch units by magnitude: a count since 1970 between these bounds is read in that unit. Below 1e8
# seconds (before 1973) a number is more likely not an epoch at all.
_EPOCH_UNITS = (("s", 1e8, 1e11), ("ms", 1e11, 1e14), ("us", 1e14, 1e17), ("ns", 1e17, 1e19))


def _numeric_timestamps(values, where, column):
    numbers = np.asarray(values, dtype=np.float64)
    if not np.isfinite(numbers).all():
        raise DataError(f"{where}: column '{column}' has a missing or non-finite time at row "
                        f"{int(np.argmax(~np.isfinite(numbers)))}.")
    text = pd.Index(values).astype(str)
    if ((numbers >= 19000101) & (numbers <= 21001231) & (numbers == np.floor(numbers))).all():
        parsed = pd.to_datetime(text, format="%Y%m%d", errors="coerce")
        if not parsed.isna().any():
            return parsed  # yyyymmdd dates
    low, high = np.abs(numbers).min(), np.abs(numbers).max()
    for unit, start, stop in _EPOCH_UNITS:
        if start <= low and high < stop:
            return pd.to_datetime(numbers.astype(np.int64) if unit == "ns" else numbers, unit=unit, utc=True)
    raise DataError(
        f"{where}: column '{column}' holds numbers from {low:.10g} to {high:.10g}, which are not yyyymmdd dates nor "
        "one unit of time since 1970 (seconds from 1e8, milliseconds from 1e11, microseconds from 1e14, "
        "nanoseconds from 1e17). Write ISO-8601 timestamps, e.g. 2024-01-31T16:00:00Z.")


def validate_bars(frame, symbol):
    """Checks one symbol's bars and returns them in canonical form.

    Canonical form: float64 columns `open, high, low, close, volume` (other
    columns dropped), a strictly increasing UTC `DatetimeIndex` named
    `timestamp`. Naive timestamps are taken as UTC (logged once per process).

    Args:
        frame: a `pandas.DataFrame` with a DatetimeIndex and OHLCV columns
            (see `standardize_columns`).
        symbol: the symbol the bars belong to, used in error messages.

    Returns:
        The canonical frame.

    Raises:
        DataError: naming the symbol, the column and the first bad timestamp
            for: empty data, missing columns (closes alone are accepted:
            open, high and low are set to the close, a missing volume to 0), non-numeric values, NaN or
            infinite prices, non-positive prices, negative volume, high < low,
            open or close outside [low, high], duplicate or unsorted timestamps,
            and absurd values (see `keras_synapse.data.plausibility`, which
            also warns about constant or stale closes).
    """
    if frame is None or len(frame) == 0:
        raise DataError(f"Symbol '{symbol}': no bars (empty data).")
    frame = _from_closes_only(frame)
    missing = [name for name in OHLCV_COLUMNS if name not in frame.columns]
    if missing:
        raise DataError(
            f"Symbol '{symbol}': missing required column(s) {missing}. "
            f"Received columns: {list(frame.columns)}"
        )
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError(f"Symbol '{symbol}': index is not a DatetimeIndex (got {type(frame.index).__name__}).")
    bars = frame.loc[:, list(OHLCV_COLUMNS)].copy()
    # One time unit whatever the source (yfinance gives seconds, Parquet
    # microseconds, pandas 3 defaults to microseconds), so equal bars always hash to the same fingerprint.
    bars.index = _to_utc(bars.index, symbol).as_unit("us")
    bars.index.name = "timestamp"
    _check_order(bars.index, symbol)
    for column in OHLCV_COLUMNS:
        bars[column] = _to_float(bars[column], symbol, column)
    _check_values(bars, symbol)
    check_plausible(bars, symbol)
    return bars


def _from_closes_only(frame):
    """Closes without open, high and low (the commonest free data) become bars with open = high = low = close.

    Volume, when missing too, is 0. `Panel.close_only_symbols` finds such
    bars again, so a feature set that reads the other columns is refused
    instead of computing constant ranges and volumes.
    """
    if "close" not in frame.columns or any(name in frame.columns for name in ("open", "high", "low")):
        return frame
    filled = frame.assign(open=frame["close"], high=frame["close"], low=frame["close"])
    return filled if "volume" in frame.columns else filled.assign(volume=0.0)


# Notices a process gives once (a run over 500 symbols, or a server answering requests, would repeat them).
SAID_ONCE = set()


def _to_utc(index, symbol):
    if index.tz is None:
        if "naive" not in SAID_ONCE:
            SAID_ONCE.add("naive")
            logger.warning("Naive timestamps are taken as UTC (first seen for symbol '%s'; said once).", symbol)
        return index.tz_localize("UTC")
    return index.tz_convert("UTC")


def _check_order(index, symbol):
    duplicated = index.duplicated()
    if duplicated.any():
        raise DataError(
            f"Symbol '{symbol}', column 'timestamp': duplicate timestamp {index[duplicated.argmax()]}."
        )
    decreasing = np.flatnonzero(np.diff(index.asi8) < 0)
    if len(decreasing):
        position = decreasing[0] + 1
        raise DataError(
            f"Symbol '{symbol}', column 'timestamp': timestamps are not sorted; "
            f"{index[position]} comes after {index[position - 1]}."
        )


def _to_float(series, symbol, column):
    converted = pd.to_numeric(series, errors="coerce").astype("float64")
    unparsable = converted.isna() & series.notna()
    if unparsable.any():
        first = unparsable.idxmax()
        raise DataError(
            f"Symbol '{symbol}', column '{column}': non-numeric value {series[first]!r} at {first}."
        )
    return converted


def _first_bad(bars, mask, symbol, column, problem):
    if mask.any():
        first = mask.idxmax()
        value = bars.at[first, column]
        # A NumPy scalar's repr reads np.float64(192.18): the message shows the plain number.
        value = value.item() if hasattr(value, "item") else value
        raise DataError(f"Symbol '{symbol}', column '{column}': {problem} at {first} (value {value!r}).")


def _check_values(bars, symbol):
    for column in OHLCV_COLUMNS:
        _first_bad(bars, ~np.isfinite(bars[column]), symbol, column, "NaN or infinite value")
    for column in PRICE_COLUMNS:
        _first_bad(bars, bars[column] <= 0, symbol, column, "non-positive price")
    _first_bad(bars, bars["volume"] < 0, symbol, "volume", "negative volume")
    slack = _RANGE_TOLERANCE * bars["high"]
    _first_bad(bars, bars["high"] < bars["low"] - slack, symbol, "high", "high below low")
    for column in ("open", "close"):
        outside = (bars[column] > bars["high"] + slack) | (bars[column] < bars["low"] - slack)
        _first_bad(bars, outside, symbol, column, "price outside [low, high]")


class Panel(Mapping):
    """Validated OHLCV bars for several symbols.

    A read-only mapping from symbol to a canonical frame (see `validate_bars`).
    Symbols keep the order they were given in.

    Args:
        frames: a mapping from symbol to a frame of bars.
        validate: whether to validate and canonicalize each frame. Sources pass
            `True`; internal transforms of an already valid panel may pass
            `False`. Defaults to `True`.

    Raises:
        DataError: for an empty mapping or invalid bars.

    Example:

    >>> import pandas as pd
    >>> index = pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")
    >>> bars = pd.DataFrame({"open": [1.0, 2, 3], "high": [2.0, 3, 4],
    ...     "low": [0.5, 1, 2], "close": [1.5, 2.5, 3.5], "volume": [10.0, 20, 30]}, index=index)
    >>> Panel({"ABC": bars}).symbols
    ('ABC',)
    """

    def __init__(self, frames, validate=True):
        if not frames:
            raise DataError("The panel has no symbols: the data source returned nothing.")
        self._frames = {
            str(symbol): validate_bars(frame, symbol) if validate else frame
            for symbol, frame in frames.items()
        }

    def __getitem__(self, symbol):
        try:
            return self._frames[symbol]
        except KeyError:
            raise KeyError(f"Symbol '{symbol}' is not in the panel. Symbols: {list(self._frames)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._frames)

    def __len__(self):
        return len(self._frames)

    def __repr__(self):
        return f"Panel({len(self)} symbols, {self.num_bars} bars, {self.start} .. {self.end})"

    @property
    def symbols(self):
        return tuple(self._frames)

    @property
    def num_bars(self):
        return sum(len(frame) for frame in self._frames.values())

    @property
    def start(self):
        return min(frame.index[0] for frame in self._frames.values())

    @property
    def end(self):
        return max(frame.index[-1] for frame in self._frames.values())

    def select(self, symbols):
        """Returns a panel with only `symbols`, in that order."""
        return Panel({symbol: self[symbol] for symbol in symbols}, validate=False)

    def truncate(self, end):
        """Returns a panel with only the bars at or before `end` (a timestamp)."""
        end = pd.Timestamp(end)
        frames = {symbol: frame.loc[:end] for symbol, frame in self._frames.items()}
        return Panel({symbol: frame for symbol, frame in frames.items() if len(frame)}, validate=False)

    def to_long(self):
        """Returns one long frame with a `symbol` column and a `timestamp` column."""
        return pd.concat(
            [frame.reset_index().assign(symbol=symbol) for symbol, frame in self._frames.items()],
            ignore_index=True,
        )

    def fingerprint(self):
        """Returns a SHA-256 hex digest of symbols, timestamps and values.

        Two panels with the same fingerprint hold identical bars; the registry
        records it so a model can be traced to the exact data it was fit on.
        """
        digest = hashlib.sha256()
        for symbol, frame in self._frames.items():
            _digest_bars(digest, symbol, frame)
        return digest.hexdigest()

    def symbol_fingerprints(self):
        """Symbol -> the fingerprint of that symbol's bars alone, to name which symbols two panels differ in."""
        return {symbol: _digest_bars(hashlib.sha256(), symbol, frame).hexdigest()
                for symbol, frame in self._frames.items()}

    @property
    def close_only_symbols(self):
        """Symbols whose bars carry closes only: open, high, low and close equal on every bar."""
        return tuple(symbol for symbol, frame in self._frames.items()
                     if (frame["open"].to_numpy() == frame["close"].to_numpy()).all()
                     and (frame["high"].to_numpy() == frame["low"].to_numpy()).all()
                     and (frame["high"].to_numpy() == frame["close"].to_numpy()).all())

    def require_history(self, num_bars, reason):
        """Raises `DataError` naming each symbol with fewer than `num_bars` bars.

        Args:
            num_bars: the minimum number of bars each symbol needs.
            reason: what the bars are needed for, e.g.
                "sequence_length 20 + horizon 5 + warm-up 20".
        """
        short = {symbol: len(frame) for symbol, frame in self._frames.items() if len(frame) < num_bars}
        if short:
            raise DataError(
                f"History too short for {reason} (needs {num_bars} bars): "
                + ", ".join(f"'{symbol}' has {count}" for symbol, count in short.items())
            )


def _digest_bars(digest, symbol, frame):
    digest.update(symbol.encode())
    digest.update(frame.index.asi8.tobytes())
    digest.update(np.ascontiguousarray(frame.to_numpy(dtype="float64")).tobytes())
    return digest
