"""Coarser bars from finer ones: time bars and information-driven bars.

Every bar built here is stamped with the timestamp of its LAST constituent
bar, the moment it is complete. A weekly bar of daily bars is stamped on the
week's last trading day, not on a calendar label such as the Sunday that
closes the bin or the Monday that opens it: a bar must never be visible
before all the bars in it have happened, or features computed on it look
ahead.

Information-driven bars (Lopez de Prado, "Advances in Financial Machine
Learning", ch. 2) close after a fixed amount of trading rather than of time:
`volume_bars` after every `volume_per_bar` shares, `dollar_bars` after every
`dollars_per_bar` of traded value. Sampling on activity gives bars closer to
equal information content, with returns nearer to i.i.d. normal than time
bars.
"""

import numpy as np
import pandas as pd

from keras_synapse.data.panel import OHLCV_COLUMNS, Panel
from keras_synapse.errors import ConfigError, DataError

_AGGREGATIONS = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def resample_time_bars(frame, rule):
    """Aggregates one symbol's bars into coarser time bars.

    Open is the first open of the bin, high the highest high, low the lowest
    low, close the last close, volume the total. Bins without bars (weekends,
    holidays) are dropped. Each bar is stamped with its last constituent
    bar's timestamp (see the module docstring), so the stamps are actual bar
    times and the bins follow the index's time zone (UTC for canonical
    frames).

    Args:
        frame: a `pandas.DataFrame` of bars with a `DatetimeIndex` and
            columns `open, high, low, close, volume`; other columns are
            dropped.
        rule: a pandas offset alias for the bin width, e.g. `"W"` (weeks
            ending Sunday), `"ME"` (calendar months), `"h"` (hours).

    Returns:
        A frame with columns `open, high, low, close, volume`, one row per
        non-empty bin. If the data end inside a bin, its bar covers only the
        bars so far (stamped at the last of them, so still no look-ahead).

    Raises:
        ConfigError: if `rule` is not a pandas offset alias.
        DataError: if columns are missing or the index is not a
            `DatetimeIndex`.

    Example:

    >>> index = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    >>> bars = pd.DataFrame({"open": [1.0, 2, 3, 4], "high": [2.0, 3, 4, 5],
    ...     "low": [0.5, 1, 2, 3], "close": [2.0, 3, 4, 5], "volume": [1.0, 1, 1, 1]}, index=index)
    >>> resample_time_bars(bars, "2D")["volume"].tolist()
    [2.0, 2.0]
    """
    bars = _ohlcv(frame)
    try:
        offset = pd.tseries.frequencies.to_offset(rule)
    except (ValueError, TypeError):
        raise ConfigError(f"`rule` must be a pandas offset alias such as 'W' or 'ME'. Received: rule={rule!r}") from None
    bins = bars.assign(last_timestamp=bars.index).resample(offset)
    resampled = bins.agg({**_AGGREGATIONS, "last_timestamp": "last"})
    resampled = resampled[bins.size() > 0]
    return _stamped_at_last(resampled)


def resample_panel(panel, rule):
    """Applies `resample_time_bars` to every symbol of a panel.

    Args:
        panel: a `Panel`.
        rule: a pandas offset alias, as in `resample_time_bars`.

    Returns:
        A `Panel` of the coarser bars, symbols in the same order.

    Raises:
        ConfigError: if `rule` is not a pandas offset alias.
    """
    # Aggregates of valid bars are valid bars: no second validation pass.
    return Panel({symbol: resample_time_bars(frame, rule) for symbol, frame in panel.items()}, validate=False)


def volume_bars(frame, volume_per_bar):
    """Builds volume bars: one bar per `volume_per_bar` shares traded.

    Bars close where the running total of volume first reaches a multiple of
    `volume_per_bar`; the bar that reaches it is the last one in. Boundaries
    sit on the cumulative volume clock of the whole series, so volume beyond
    a multiple counts toward the next bar (a resetting counter, as in AFML's
    loop, would discard it): one cumulative sum defines every bar, and bars
    average exactly `volume_per_bar` in the long run. A single input bar
    whose volume crosses several multiples closes one bar, never empty ones.
    The trailing bars that have not yet reached the next multiple form no bar:
    it is not complete.

    Args:
        frame: a `pandas.DataFrame` of bars with a `DatetimeIndex` and
            columns `open, high, low, close, volume`.
        volume_per_bar: the volume that closes a bar, > 0.

    Returns:
        A frame with columns `open, high, low, close, volume`, stamped at each
        bar's last constituent timestamp.

    Raises:
        ConfigError: "`volume_per_bar` must be > 0. Received:
            volume_per_bar=0" for a non-positive or non-finite threshold.
        DataError: if columns are missing or the index is not a
            `DatetimeIndex`.

    Example:

    >>> index = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    >>> bars = pd.DataFrame({"open": [1.0, 2, 3, 4], "high": [2.0, 3, 4, 5],
    ...     "low": [0.5, 1, 2, 3], "close": [2.0, 3, 4, 5], "volume": [4.0, 7, 2, 9]}, index=index)
    >>> volume_bars(bars, 10)["volume"].tolist()
    [11.0, 11.0]
    """
    _check_threshold("volume_per_bar", volume_per_bar)
    bars = _ohlcv(frame)
    return _threshold_bars(bars, bars["volume"].to_numpy(dtype="float64"), float(volume_per_bar))


def dollar_bars(frame, dollars_per_bar):
    """Builds dollar bars: one bar per `dollars_per_bar` of traded value.

    The traded value of an input bar is taken as `close * volume`. Otherwise
    exactly as `volume_bars`: boundaries on multiples of the cumulative
    value, the crossing bar is the last one in, an incomplete tail is dropped.
    Dollar bars keep a stable count per unit of activity when the price level
    changes a lot (splits, decades of growth), where volume bars drift.

    Args:
        frame: a `pandas.DataFrame` of bars with a `DatetimeIndex` and
            columns `open, high, low, close, volume`.
        dollars_per_bar: the traded value that closes a bar, > 0.

    Returns:
        A frame with columns `open, high, low, close, volume`, stamped at each
        bar's last constituent timestamp.

    Raises:
        ConfigError: "`dollars_per_bar` must be > 0. Received:
            dollars_per_bar=0" for a non-positive or non-finite threshold.
        DataError: if columns are missing or the index is not a
            `DatetimeIndex`.
    """
    _check_threshold("dollars_per_bar", dollars_per_bar)
    bars = _ohlcv(frame)
    traded_value = bars["close"].to_numpy(dtype="float64") * bars["volume"].to_numpy(dtype="float64")
    return _threshold_bars(bars, traded_value, float(dollars_per_bar))


def _check_threshold(name, value):
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not is_number or not np.isfinite(value) or value <= 0:
        raise ConfigError(f"`{name}` must be > 0. Received: {name}={value!r}")


def _ohlcv(frame):
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError(f"Bars need a DatetimeIndex. Received: an index of type {type(frame.index).__name__}")
    missing = [name for name in OHLCV_COLUMNS if name not in frame.columns]
    if missing:
        raise DataError(f"Bars are missing column(s) {missing}. Received columns: {list(frame.columns)}")
    return frame.loc[:, list(OHLCV_COLUMNS)]


def _threshold_bars(bars, activity, threshold):
    """Groups rows into bars that close on multiples of `threshold` of cumulative `activity`."""
    cumulative = np.cumsum(activity)
    # A row belongs to the bar that was open when it started: the number of
    # multiples already reached by the rows before it.
    multiples_reached = np.floor(cumulative / threshold)
    bar_number = np.concatenate([[0.0], multiples_reached[:-1]])[: len(activity)]
    # Computed from the same numbers as the next row's bar_number, so a row
    # closes a bar exactly when the next row starts a new one.
    complete = multiples_reached > bar_number
    # Rows after the last completing row belong to a bar still open.
    completing_rows = np.flatnonzero(complete)
    num_kept = completing_rows[-1] + 1 if len(completing_rows) else 0
    kept = bars.iloc[:num_kept]
    grouped = kept.assign(last_timestamp=kept.index).groupby(bar_number[:num_kept], sort=True)
    return _stamped_at_last(grouped.agg({**_AGGREGATIONS, "last_timestamp": "last"}))


def _stamped_at_last(aggregated):
    stamped = aggregated.set_index("last_timestamp")
    stamped.index.name = "timestamp"
    return stamped.loc[:, list(OHLCV_COLUMNS)].astype("float64")


# `bars` in an experiment (or `--set bars=...`): how the source's bars become the model's.
BAR_KINDS = ("time", "volume", "dollar")
# A relative threshold (`dollar:5x`) is a multiple of the symbol's median activity over its first bars: known
# early, so the bar boundaries never depend on how much the symbol trades later.
RELATIVE_TO_FIRST_BARS = 60


def parse_bar_spec(spec):
    """Parses `bars`: `""` (the source's bars), `"time:RULE"`, `"volume:N"` or `"dollar:N"`.

    N may be absolute (`dollar:5e8`) or relative (`dollar:5x`: five times
    the symbol's median traded value per source bar over its first
    `RELATIVE_TO_FIRST_BARS` bars), so one spec suits symbols of any size.

    Returns:
        `None` for `""`, `("time", rule)`, or `(kind, threshold, relative)`.

    Raises:
        ConfigError: naming the accepted forms and what was received.
    """
    spec = str(spec).strip()
    if not spec:
        return None
    kind, separator, argument = spec.partition(":")
    argument = argument.strip()
    example = "bars=time:1W, bars=volume:2e6 or bars=dollar:5x (empty: the source's bars)"
    if not separator or kind not in BAR_KINDS or not argument:
        raise ConfigError(f"`bars` must be KIND:VALUE with KIND one of {BAR_KINDS}, e.g. {example}. "
                          f"Received: bars={spec!r}")
    if kind == "time":
        return kind, argument
    relative = argument.endswith("x")
    try:
        threshold = float(argument.removesuffix("x"))
    except ValueError:
        raise ConfigError(f"`bars` {kind} threshold must be a number or a multiple such as 5x, e.g. {example}. "
                          f"Received: bars={spec!r}") from None
    _check_threshold(f"{kind} threshold in `bars`", threshold)
    return kind, threshold, relative


def build_bars(panel, spec):
    """The model's bars from the source's: time, volume or dollar bars per `parse_bar_spec(spec)`.

    Each symbol's bars are built from its own finer bars and stamped at
    their last constituent bar, so nothing is seen before it has happened.

    Returns:
        A `Panel` (the same one for an empty spec).

    Raises:
        ConfigError: for a malformed spec; DataError when a symbol's bars
            have no volume to build activity bars from.
    """
    parsed = parse_bar_spec(spec)
    if parsed is None:
        return panel
    if parsed[0] == "time":
        return resample_panel(panel, parsed[1])
    kind, threshold, relative = parsed
    silent = [symbol for symbol, frame in panel.items() if not (frame["volume"] > 0).any()]
    if silent:
        raise DataError(f"`bars={spec}` needs traded volume, and symbol(s) {silent} have none (closes-only data?). "
                        "Use time bars (bars=time:RULE) or the source's bars.")
    build = volume_bars if kind == "volume" else dollar_bars
    built = {}
    for symbol, frame in panel.items():
        activity = frame["volume"] if kind == "volume" else frame["close"] * frame["volume"]
        built[symbol] = build(frame, threshold * float(activity.iloc[:RELATIVE_TO_FIRST_BARS].median()) if relative
                              else threshold)
    return Panel(built, validate=False)
