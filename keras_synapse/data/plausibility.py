"""Checks that valid bars are also plausible market data, so no data choice is made silently.

`validate_bars` refuses what is impossible (a negative price, high below
low); this module catches what is possible in a file but not in a market:

- **absurd values**, refused: a price more than `ABSURD_FACTOR` times (or
  less than 1/`ABSURD_FACTOR` of) the median close of the bars around it, and
  more than `ABSURD_SIGMAS` robust standard deviations of the symbol's own
  bar-to-bar moves away; a volume more than `ABSURD_VOLUME_FACTOR` times the
  median volume around it. The crash of 1987 (-23% in a day) and GameStop's
  +134% day are far inside these bounds; a mistyped exponent (1e300), a price
  in cents among dollars, or an unadjusted 1:100 split are not.
- **constant and stale series**, warned about: a close that never changes, or
  stays unchanged for `STALE_BARS` bars in a row (a halted, delisted or
  forward-filled series), gives features that carry nothing.
- **mixed bar frequencies**, refused for a panel: windows and horizons count
  bars, so hourly bars beside daily ones would mix meanings.

The median around a bar uses bars on both sides: this is a check of the data
before anything is computed, not a feature, so it cannot leak into a model.
"""

import logging

import numpy as np
import pandas as pd

from keras_synapse.errors import DataError

logger = logging.getLogger("keras_synapse.data")

ABSURD_FACTOR = 100.0
ABSURD_SIGMAS = 50.0
ABSURD_VOLUME_FACTOR = 1e6
NEIGHBOURHOOD = 41  # bars in the centred median a value is compared with
MIN_NEIGHBOURS = 5
STALE_BARS = 20
FREQUENCY_RATIO = 1.5  # median spacings further apart than this are different frequencies


def check_plausible(bars, symbol):
    """Refuses absurd prices and volumes; warns about constant or stale closes.

    Args:
        bars: one symbol's canonical bars (see `validate_bars`).
        symbol: the symbol, for the messages.

    Raises:
        DataError: naming the symbol, the column, the first absurd bar, its
            value and the median it was compared with.
    """
    if len(bars) < MIN_NEIGHBOURS:
        return
    log_close = np.log(bars["close"])
    reference = log_close.rolling(NEIGHBOURHOOD, center=True, min_periods=MIN_NEIGHBOURS).median()
    moves = np.abs(np.diff(log_close.to_numpy()))
    robust_sigma = 1.4826 * float(np.median(moves))
    limit = max(np.log(ABSURD_FACTOR), ABSURD_SIGMAS * robust_sigma)
    for column in ("open", "high", "low", "close"):
        _refuse_first(np.abs(np.log(bars[column]) - reference) > limit, bars[column], np.exp(reference), symbol, column,
                      f"more than {np.exp(limit):.3g} times away from the median close of the bars around it",
                      "No market moves that far in one bar: fix the source (a unit or typing error?), or adjust the "
                      "prices if the move is real (an unadjusted split).")
    volume = bars["volume"]
    typical = volume.rolling(NEIGHBOURHOOD, center=True, min_periods=MIN_NEIGHBOURS).median()
    _refuse_first((typical > 0) & (volume > ABSURD_VOLUME_FACTOR * typical), volume, typical, symbol, "volume",
                  f"more than {ABSURD_VOLUME_FACTOR:g} times the median volume of the bars around it",
                  "Fix the source (a unit or typing error?).")
    _warn_if_stale(bars["close"], symbol)


def _refuse_first(mask, values, reference, symbol, column, problem, advice):
    if not mask.any():
        return
    first = mask.idxmax()
    raise DataError(f"Symbol '{symbol}', column '{column}': absurd value {float(values[first]):.6g} at {first}, "
                    f"{problem} ({float(reference[first]):.6g}); {int(mask.sum())} such bar(s). {advice}")


def _warn_if_stale(close, symbol):
    values = close.to_numpy()
    if len(values) > 1 and np.all(values == values[0]):
        logger.warning("Symbol '%s': its close never changes (%g for all %d bars): its returns are all 0 and its "
                       "features carry nothing; remove it or check the source.", symbol, values[0], len(values))
        return
    # Runs of unchanged closes: the run id increases at every change.
    run_id = np.concatenate([[0], np.cumsum(values[1:] != values[:-1])])
    lengths = np.bincount(run_id)
    longest = int(lengths.argmax())
    if lengths[longest] >= STALE_BARS:
        start = int(np.flatnonzero(run_id == longest)[0])
        end = start + int(lengths[longest]) - 1
        logger.warning("Symbol '%s': close unchanged at %g for %d bars in a row (%s to %s): stale or forward-filled "
                       "data?", symbol, values[start], lengths[longest], close.index[start], close.index[end])


def check_one_frequency(panel):
    """Refuses a panel whose symbols have different bar frequencies (median spacing).

    Daily bars of stocks (five days a week) and of crypto (seven) both have a
    median spacing of one day and pass; hourly bars beside daily ones do not.

    Raises:
        DataError: naming the symbols of each frequency.
    """
    spacings = {symbol: median_spacing(frame.index) for symbol, frame in panel.items() if len(frame) > 1}
    if len(spacings) < 2:
        return
    finest, coarsest = min(spacings.values()), max(spacings.values())
    if coarsest / finest <= FREQUENCY_RATIO:
        return
    groups = {}
    for symbol, spacing in spacings.items():
        key = finest if spacing / finest <= FREQUENCY_RATIO else spacing
        groups.setdefault(key, []).append(symbol)
    described = "; ".join(f"every {_spacing_text(spacing)}: {symbols_text(symbols)}"
                          for spacing, symbols in sorted(groups.items()))
    raise DataError(f"The symbols have different bar frequencies (median spacing of their bars) — {described}. "
                    "Windows and label horizons count bars, so one model over both would mix meanings: load them "
                    "in separate runs, or resample the finer bars (keras_synapse.data.bars.resample_panel).")


def calendar_summary(panel):
    """One line on the panel's calendars: bar spacing and how many bar times every symbol shares.

    Symbols on different calendars (stocks beside a seven-day cryptocurrency)
    share only some bar times; the line says how many, and that the backtest
    holds each calendar's symbols as a sleeve on their own dates.
    """
    spacings = [median_spacing(frame.index) for frame in panel.values() if len(frame) > 1]
    union = None
    for frame in panel.values():
        union = frame.index if union is None else union.union(frame.index)
    counts = pd.Series(0, index=union)
    for frame in panel.values():
        counts[frame.index] += 1
    panel_dates = len(union)
    shared = int((counts == len(panel)).sum())
    spacing = _spacing_text(pd.Series(spacings).median()) if spacings else "n/a"
    line = (f"calendar: {len(panel)} symbol(s), median bar spacing {spacing}; {panel_dates} bar times, "
            f"{shared / panel_dates:.1%} of them held by every symbol")
    if shared < panel_dates and len(panel) > 1:
        line += " (the backtest holds symbols on different calendars as sleeves, each on its own dates)"
    return line


def median_spacing(index):
    """The median time between consecutive bars of a `DatetimeIndex` (NaT for fewer than two bars)."""
    return pd.Series(index).diff().median()


def _spacing_text(spacing):
    seconds = spacing.total_seconds()
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            count = seconds / size
            return f"{count:g} {unit}" + ("s" if count != 1 else "")
    return f"{seconds:g} seconds"


def symbols_text(symbols, shown=5):
    """Symbols for a message: the first `shown`, then how many more."""
    symbols = list(symbols)
    listed = ", ".join(symbols[:shown])
    return listed + (f" and {len(symbols) - shown} more" if len(symbols) > shown else "")
