"""A table's columns as the panel reads them: names, the user's own names, and the time column.

Column names are matched case-insensitively (`_` reads as a space), short
aliases (`o`, `vol`, ...) are expanded, and the `columns` option maps the
file's own names (`"close=Close Price;volume=Vol"`). The time column is named
by `date_column` or found among `DATE_COLUMN_NAMES`; it may hold ISO-8601
text (one zone, or one zone's two daylight-saving offsets, converted to UTC),
yyyymmdd integers, or whole numbers of one unit of time since 1970.
"""

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

DATE_COLUMN_NAMES = ("timestamp", "datetime", "date", "time", "index")
COLUMN_ALIASES = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "vol": "volume"}
# The keys of the `columns` option (the file's own name for each column) and the column each becomes.
MAPPED_COLUMNS = {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume",
                  "value": "value", "adj_close": "adj close", "symbol": "symbol"}
COLUMNS_EXAMPLE = 'columns="close=Close Price;volume=Vol"'


def standardize_columns(frame, where, *, date_column="", columns=""):
    """Lower-cases column names and moves the date column into a DatetimeIndex.

    Args:
        frame: a `pandas.DataFrame` as read from a file or an API.
        where: a description of the origin used in error messages, e.g. a path.
        date_column: the name of the date/time column (any case); `""` finds
            one of `DATE_COLUMN_NAMES` or an unnamed first column of dates.
            Defaults to `""`.
        columns: the frame's own names for OHLCV columns, as
            `"close=Close Price;volume=Vol"` or a dict (keys: see
            `MAPPED_COLUMNS`). Defaults to `""` (the usual names).

    Returns:
        A new frame with lower-case OHLCV column names and a DatetimeIndex
        named `timestamp` (time zone not yet normalized).

    Raises:
        DataError: when no date column or index can be found, or a column
            named in `date_column` or `columns` is not there.
    """
    if date_column and frame.index.name is not None and _normalized(frame.index.name) == _normalized(date_column):
        frame = frame.reset_index()  # a Parquet file keeps its date index
    frame = frame.rename(columns=_normalized)
    frame = _map_columns(frame, column_mapping(columns), where)
    aliases = {name: COLUMN_ALIASES[name] for name in frame.columns
               if name in COLUMN_ALIASES and COLUMN_ALIASES[name] not in frame.columns}
    frame = frame.rename(columns=aliases)
    if date_column:
        if _normalized(date_column) not in frame.columns:
            raise DataError(f"{where}: no column {date_column!r} (date_column={date_column!r}). "
                            f"Received columns: {list(frame.columns)}")
        frame = frame.set_index(_normalized(date_column))
        frame.index = parse_timestamps(frame.index, where, _normalized(date_column))
    elif not isinstance(frame.index, pd.DatetimeIndex):
        date_column = next((name for name in DATE_COLUMN_NAMES if name in frame.columns), None)
        first = frame.columns[0] if len(frame.columns) else None
        if date_column is None and first is not None and (first == "" or first.startswith("unnamed")):
            # `df.to_csv()` of a frame indexed by date writes the index as a first column without a name.
            date_column = first
        if date_column is None:
            raise DataError(
                f"{where}: no date column. Expected one of {list(DATE_COLUMN_NAMES)} "
                f"(any case), or an unnamed first column of dates; name another with --set date_column=NAME. "
                f"Received columns: {list(frame.columns)}"
            )
        frame = frame.set_index(date_column)
        frame.index = parse_timestamps(frame.index, where, date_column)
    frame.index.name = "timestamp"
    return frame


def _normalized(name):
    return str(name).strip().lower().replace("_", " ")


def column_mapping(columns):
    """The `columns` option as a dict: canonical name -> the file's name for it.

    Args:
        columns: `"close=Close Price;volume=Vol"` (keys: `open`, `high`,
            `low`, `close`, `volume`, `value` (a traded value standing in for
            volume), `adj_close`, `symbol`), or such a dict.

    Raises:
        ConfigError: for a pair without `=`, an unknown key or a key given twice.
    """
    if isinstance(columns, Mapping):
        pairs = list(columns.items())
    else:
        parts = [part.strip() for part in str(columns).split(";") if part.strip()]
        pairs = [part.split("=", 1) if "=" in part else (part, None) for part in parts]
    mapping = {}
    for key, name in pairs:
        key = str(key).strip().lower()
        if name is None or not str(name).strip():
            raise ConfigError(f"`columns` expects key=column pairs separated by ';', e.g. {COLUMNS_EXAMPLE}. "
                              f"Received: columns={columns!r}")
        if key not in MAPPED_COLUMNS:
            raise ConfigError(f"`columns` has no key {key!r}: keys are {', '.join(MAPPED_COLUMNS)} (the date is "
                              f"`date_column`), e.g. {COLUMNS_EXAMPLE}. Received: columns={columns!r}")
        if key in mapping:
            raise ConfigError(f"`columns` names {key!r} twice. Received: columns={columns!r}")
        mapping[key] = str(name).strip()
    return mapping


def _map_columns(frame, mapping, where):
    renames = {}
    for key, name in mapping.items():
        if _normalized(name) not in frame.columns:
            raise DataError(f"{where}: `columns` maps {key} to {name!r}, which is not a column. "
                            f"Received columns: {list(frame.columns)}")
        renames[_normalized(name)] = MAPPED_COLUMNS[key]
    # A column already holding a mapped name gives way to the column the mapping names.
    displaced = [target for target in renames.values() if target in frame.columns and target not in renames]
    return frame.drop(columns=displaced).rename(columns=renames)


def parse_timestamps(values, where, column):
    """`values` of the column `column` of `where` as a `DatetimeIndex`.

    Raises:
        DataError: naming `where` and `column`, for values that are not
            times, or times in mixed zones.
    """
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
