"""The validated Panel: symbol -> OHLCV bars with a UTC index.

Every source (files, yfinance, Alpaca, the offline sample) ends in `Panel`, and
`Panel` refuses bars that would silently corrupt features or labels. Checks run
at this boundary so that nothing downstream (features, windows, TensorFlow)
ever sees a NaN price or an unsorted index.
"""

import dataclasses
import hashlib
import logging
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from keras_synapse.data.bad_bars import (BAD_BARS, bad_times, drop_summary, error_message, find,
                                         impossible_values)
# Sources import `standardize_columns` from here, beside `validate_bars`.
from keras_synapse.data.columns import COLUMNS_EXAMPLE, MAPPED_COLUMNS, standardize_columns  # noqa: F401
from keras_synapse.data.plausibility import absurd_bars, split_like_jumps, symbols_text, warn_if_stale
from keras_synapse.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
# A traded value (price times shares) stands in for a missing volume, said once per load.
VOLUME_SUBSTITUTES = ("value", "turnover", "amount")
# An adjusted close (for splits and dividends) rescales the prices unless `adjust_prices=False`, said once per load.
ADJUSTED_CLOSE_NAMES = ("adj close", "adjusted close", "adjclose", "adjusted")


def validate_bars(frame, symbol, *, bad_bars="error", adjust_prices=True):
    """Checks one symbol's bars and returns them in canonical form.

    Canonical form: float64 columns `open, high, low, close, volume` (other
    columns dropped), a strictly increasing UTC `DatetimeIndex` named
    `timestamp`. Naive timestamps are taken as UTC (logged once per process).
    A missing volume is taken from a traded-value column (`value`,
    `turnover`, `amount`), and an adjusted-close column (`adj close`,
    `adjusted close`, `adjusted`) rescales the prices, each said.

    Args:
        frame: a `pandas.DataFrame` with a DatetimeIndex and OHLCV columns
            (see `standardize_columns`).
        symbol: the symbol the bars belong to, used in error messages.
        bad_bars: `"error"` refuses bars failing a value check, listing them
            all; `"drop"` drops them, said. Defaults to `"error"`.
        adjust_prices: scale open, high, low and close by adjusted/close (and
            volume by its inverse) when an adjusted-close column is there.
            Defaults to `True`.

    Returns:
        The canonical frame.

    Raises:
        DataError: for empty data, missing columns (closes alone are
            accepted: open, high and low are set to the close, a missing
            volume to 0), an index that is not a DatetimeIndex, duplicate or
            unsorted timestamps; and, unless dropped, for bad bars: every bar
            with a non-numeric, NaN or infinite value, a non-positive price, a
            negative volume, high < low, open or close outside [low, high], or
            an absurd value (see `keras_synapse.data.plausibility`, which also
            warns about constant or stale closes), per column and problem with
            the first bad timestamp.
    """
    _check_bad_bars_option(bad_bars)
    bars, problems, notes = _canonical(frame, symbol, adjust_prices)
    if problems and bad_bars == "error":
        raise DataError(error_message(problems))
    _say_choices({symbol: notes})
    if problems:
        logger.warning(drop_summary(problems, 1))
        bars = bars.drop(index=bad_times(problems))
        if bars.empty:
            raise DataError(f"Symbol '{symbol}': every one of its {len(frame)} bars is bad (bad_bars=drop would "
                            "leave none).")
    warn_if_stale(bars["close"], symbol)
    return bars


@dataclasses.dataclass
class _Choices:
    """What loading one symbol's bars chose, said once per load for all symbols."""

    volume_from: str = ""  # the traded-value column standing in for volume
    adjusted_by: str = ""  # the adjusted-close column that rescaled the prices
    unused_adjusted: pd.Series = None  # the adjusted closes not applied (adjust_prices=False)


def _check_bad_bars_option(bad_bars):
    if bad_bars not in BAD_BARS:
        raise ConfigError(f"`bad_bars` must be one of {BAD_BARS}. Received: bad_bars={bad_bars!r}")


def _canonical(frame, symbol, adjust_prices):
    """One symbol's bars in canonical form (bad bars kept), their `BadBars` and the `_Choices` made.

    Raises:
        DataError: for what refuses the symbol as a whole (no bars, missing
            columns, a bad index, duplicate or unsorted timestamps).
    """
    if frame is None or len(frame) == 0:
        raise DataError(f"Symbol '{symbol}': no bars (empty data).")
    choices = _Choices()
    substitute = next((name for name in VOLUME_SUBSTITUTES if name in frame.columns), None)
    if "volume" not in frame.columns and substitute is not None:
        frame = frame.rename(columns={substitute: "volume"})
        choices.volume_from = substitute
    frame = _from_closes_only(frame)
    missing = [name for name in OHLCV_COLUMNS if name not in frame.columns]
    if missing:
        substitutes = "A traded value ('value', 'turnover' or 'amount') stands in for a missing volume; "
        raise DataError(
            f"Symbol '{symbol}': missing required column(s) {missing}. Received columns: {list(frame.columns)}. "
            + (substitutes if "volume" in missing else "")
            + f"name the columns with --set {COLUMNS_EXAMPLE} (keys: {', '.join(MAPPED_COLUMNS)})."
        )
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError(f"Symbol '{symbol}': index is not a DatetimeIndex (got {type(frame.index).__name__}).")
    adjusted_name = next((name for name in ADJUSTED_CLOSE_NAMES if name in frame.columns), None)
    bars = frame.loc[:, list(OHLCV_COLUMNS) + ([adjusted_name] if adjusted_name else [])].copy()
    # One time unit whatever the source (yfinance gives seconds, Parquet
    # microseconds, pandas 3 defaults to microseconds), so equal bars always hash to the same fingerprint.
    bars.index = _to_utc(bars.index, symbol).as_unit("us")
    bars.index.name = "timestamp"
    _check_order(bars.index, symbol)
    problems, non_numeric = [], {}
    for column in bars.columns:
        raw = bars[column]
        bars[column] = pd.to_numeric(raw, errors="coerce").astype("float64")
        non_numeric[column] = bars[column].isna() & raw.notna()
        problems.append(find(symbol, column, "non-numeric value", non_numeric[column],
                             first=lambda time, raw=raw: f"non-numeric value {raw[time]!r} at {time}"))
    problems += impossible_values(bars, symbol, non_numeric)
    if adjusted_name is not None:
        adjusted = bars.pop(adjusted_name)
        # An adjusted close equal to the close (an index, or a vendor's copy) changes nothing: nothing to say.
        differs = not np.isclose(adjusted, bars["close"], rtol=1e-9, equal_nan=True).all()
        if adjust_prices and differs:
            unusable = ~(np.isfinite(adjusted) & (adjusted > 0)) & ~non_numeric[adjusted_name]
            problems.append(find(symbol, adjusted_name, "missing or non-positive adjusted close", unusable, adjusted))
            factor = adjusted / bars["close"]
            for column in PRICE_COLUMNS:
                bars[column] = bars[column] * factor
            if not choices.volume_from:  # a traded value does not change with a split
                bars["volume"] = bars["volume"] / factor
            choices.adjusted_by = adjusted_name
        elif differs:
            choices.unused_adjusted = adjusted
    problems = [problem for problem in problems if problem is not None]
    problems += absurd_bars(bars.drop(index=bad_times(problems)), symbol)
    return bars, problems, choices


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


class Panel(Mapping):
    """Validated OHLCV bars for several symbols.

    A read-only mapping from symbol to a canonical frame (see `validate_bars`).
    Symbols keep the order they were given in.

    Args:
        frames: a mapping from symbol to a frame of bars.
        validate: whether to validate and canonicalize each frame. Sources pass
            `True`; internal transforms of an already valid panel may pass
            `False`. Defaults to `True`.
        bad_bars: `"error"` refuses a panel with bad bars in one error that
            lists them all (per symbol, column and problem: the count, the
            first bar and the next few times); `"drop"` drops them and says
            what it dropped. Defaults to `"error"`.
        adjust_prices: rescale the prices of symbols with an adjusted-close
            column (see `validate_bars`). Defaults to `True`.

    Raises:
        DataError: for an empty mapping, or, in one message, every symbol
            refused as a whole and (unless dropped) every bad bar.

    Validation says once for the whole panel which symbols' volume is a
    traded value, which symbols' prices an adjusted close rescaled, and the
    split-like jumps of prices that look unadjusted.

    Example:

    >>> import pandas as pd
    >>> index = pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")
    >>> bars = pd.DataFrame({"open": [1.0, 2, 3], "high": [2.0, 3, 4],
    ...     "low": [0.5, 1, 2], "close": [1.5, 2.5, 3.5], "volume": [10.0, 20, 30]}, index=index)
    >>> Panel({"ABC": bars}).symbols
    ('ABC',)
    """

    def __init__(self, frames, validate=True, *, bad_bars="error", adjust_prices=True):
        if not frames:
            raise DataError("The panel has no symbols: the data source returned nothing.")
        if validate:
            self._frames = _validated(frames, bad_bars, adjust_prices)
        else:
            self._frames = {str(symbol): frame for symbol, frame in frames.items()}

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


def _validated(frames, bad_bars, adjust_prices):
    """Every symbol's canonical bars; every refusal and bad bar of the panel in one error, or the bad bars dropped."""
    _check_bad_bars_option(bad_bars)
    checked, refusals, problems, choices = {}, [], [], {}
    for symbol, frame in frames.items():
        symbol = str(symbol)
        try:
            bars, found, choices[symbol] = _canonical(frame, symbol, adjust_prices)
        except DataError as error:
            refusals.append(str(error))
            continue
        problems += found
        if found and bad_bars == "drop":
            bars = bars.drop(index=bad_times(found))
            if bars.empty:
                refusals.append(f"Symbol '{symbol}': every one of its {len(frame)} bars is bad (bad_bars=drop "
                                "would leave none).")
                continue
        checked[symbol] = bars
    if refusals or (problems and bad_bars == "error"):
        raise DataError(error_message(problems if bad_bars == "error" else [], refusals, len(frames)))
    _say_choices(choices)
    if problems:
        logger.warning(drop_summary(problems, len(frames)))
    for symbol, bars in checked.items():
        warn_if_stale(bars["close"], symbol)
    _warn_split_like_jumps(checked, choices)
    return checked


def _say_choices(choices):
    """One line per choice made for any symbol: the volume taken from a traded value, prices adjusted or not."""
    by_column = {}
    for symbol, choice in choices.items():
        if choice.volume_from:
            by_column.setdefault(choice.volume_from, []).append(symbol)
    if by_column:
        logger.warning("No volume column, so a traded value stands in for it (volume features then measure money "
                       "traded, not shares; --set %s names another column): %s.", 'columns="volume=NAME"',
                       "; ".join(f"'{column}' for {symbols_text(symbols)}" for column, symbols in by_column.items()))
    adjusted = [symbol for symbol, choice in choices.items() if choice.adjusted_by]
    if adjusted:
        names = sorted({choices[symbol].adjusted_by for symbol in adjusted})
        logger.warning("Prices adjusted by the adjusted close (%s) for %s: open, high, low and close scaled by "
                       "adjusted/close, volume by close/adjusted (not a traded value); --set adjust_prices=false "
                       "keeps the raw prices.", ", ".join(f"'{name}'" for name in names), symbols_text(adjusted))
    unused = [symbol for symbol, choice in choices.items() if choice.unused_adjusted is not None]
    if unused:
        logger.warning("adjust_prices=false: the adjusted-close column of %s is not used; their raw prices load, so "
                       "splits and dividends read as price moves.", symbols_text(unused))


def _warn_split_like_jumps(panel, choices):
    jumps = []
    for symbol, bars in panel.items():
        unused = choices[symbol].unused_adjusted
        found = split_like_jumps(bars, None if unused is None else unused.reindex(bars.index))
        jumps += [f"{symbol} at {time} ({text})" for time, text in found]
    if jumps:
        logger.warning("Split-like jumps (prices not adjusted for splits?): %s. Give split-adjusted prices, or an "
                       "adjusted-close column ('Adj Close', used when present); the bars load as given.",
                       "; ".join(jumps))


def _digest_bars(digest, symbol, frame):
    digest.update(symbol.encode())
    digest.update(frame.index.asi8.tobytes())
    digest.update(np.ascontiguousarray(frame.to_numpy(dtype="float64")).tobytes())
    return digest
