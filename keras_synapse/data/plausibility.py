"""Checks that valid bars are also plausible market data, so no data choice is made silently.

`validate_bars` refuses what is impossible (a negative price, high below
low); this module catches what is possible in a file but not in a market:

- **absurd values**, bad bars (refused, or dropped with `bad_bars="drop"`,
  see `keras_synapse.data.bad_bars`): a price more than `ABSURD_FACTOR` times (or
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
  bars, so hourly bars beside daily ones would mix meanings. A symbol's
  frequency is its typical bar spacing (`bar_spacing`), not its median: an
  illiquid stock that trades on some days only is still daily.
- **split-like jumps**, warned about: a close-to-open or close-to-close
  ratio within `SPLIT_TOLERANCE` of a common split ratio (2:1, 3:1, 3:2,
  4:1, 5:1, 10:1 or a reverse split), which an adjusted close does not show:
  unadjusted prices read a 2:1 split as a -0.69 log return.

The median around a bar uses bars on both sides: this is a check of the data
before anything is computed, not a feature, so it cannot leak into a model.
"""

import logging
from fractions import Fraction

import numpy as np
import pandas as pd

from keras_synapse.data.bad_bars import find
from keras_synapse.errors import DataError

logger = logging.getLogger("keras_synapse.data")

ABSURD_FACTOR = 100.0
ABSURD_SIGMAS = 50.0
ABSURD_VOLUME_FACTOR = 1e6
NEIGHBOURHOOD = 41  # bars in the centred median a value is compared with
MIN_NEIGHBOURS = 5
STALE_BARS = 20
FREQUENCY_RATIO = 1.5  # bar spacings further apart than this are different frequencies
# A symbol's bar spacing is this quantile of its spacings: the shortest spacing that is common among its bars. An
# illiquid daily symbol that trades on a third of the days has a median spacing of 3 days, but a quarter of its
# spacings are still one day; a few stray bars (fewer than this share) do not make a daily symbol intraday.
SPACING_QUANTILE = 0.05
SPLIT_RATIOS = (2.0, 3.0, 1.5, 4.0, 5.0, 10.0)  # forward splits; their inverses are reverse splits
SPLIT_TOLERANCE = 0.02  # a move within 2% of a split ratio is split-like
SPLIT_LIKE_MAX = 5  # more moves this large than this, and they are the symbol's volatility, not splits


def absurd_bars(bars, symbol):
    """The bars holding absurd prices or volumes, as `BadBars` (see `keras_synapse.data.bad_bars`).

    Args:
        bars: one symbol's bars, float OHLCV on a UTC index, without the
            bars already found impossible (they would distort the medians).
        symbol: the symbol, for the messages.

    Returns:
        A list of `BadBars`, one per column holding an absurd value; each
        names the first absurd bar, its value and the median it was compared
        with.
    """
    if len(bars) < MIN_NEIGHBOURS:
        return []
    log_close = np.log(bars["close"])
    reference = log_close.rolling(NEIGHBOURHOOD, center=True, min_periods=MIN_NEIGHBOURS).median()
    moves = np.abs(np.diff(log_close.to_numpy()))
    robust_sigma = 1.4826 * float(np.median(moves))
    limit = max(np.log(ABSURD_FACTOR), ABSURD_SIGMAS * robust_sigma)
    found = [_absurd(np.abs(np.log(bars[column]) - reference) > limit, bars[column], np.exp(reference), symbol, column,
                     f"more than {np.exp(limit):.3g} times away from the median close of the bars around it")
             for column in ("open", "high", "low", "close")]
    volume = bars["volume"]
    typical = volume.rolling(NEIGHBOURHOOD, center=True, min_periods=MIN_NEIGHBOURS).median()
    found.append(_absurd((typical > 0) & (volume > ABSURD_VOLUME_FACTOR * typical), volume, typical, symbol, "volume",
                         f"more than {ABSURD_VOLUME_FACTOR:g} times the median volume of the bars around it"))
    return [problem for problem in found if problem is not None]


def _absurd(mask, values, reference, symbol, column, problem):
    return find(symbol, column, "absurd value", mask, first=lambda time: (
        f"absurd value {float(values[time]):.6g} at {time}, {problem} ({float(reference[time]):.6g})"))


def warn_if_stale(close, symbol):
    """Warns about a close that never changes, or stays unchanged for `STALE_BARS` bars in a row."""
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
    """Refuses a panel whose symbols have different bar frequencies (typical bar spacing, see `bar_spacing`).

    Daily bars of stocks (five days a week), of crypto (seven) and of an
    illiquid stock that trades on some days only all have a typical spacing
    of one day and pass; hourly or weekly bars beside daily ones do not.

    Raises:
        DataError: naming the symbols of each frequency.
    """
    spacings = {symbol: bar_spacing(frame.index) for symbol, frame in panel.items() if len(frame) > 1}
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
    raise DataError(f"The symbols have different bar frequencies (the typical spacing of their bars, the shortest "
                    f"common one, so a symbol that skips days is still daily) — {described}. "
                    "Windows and label horizons count bars, so one model over both would mix meanings: load them "
                    "in separate runs, or resample the finer bars (keras_synapse.data.bars.resample_panel).")


def bar_spacing(index):
    """A symbol's bar frequency: the `SPACING_QUANTILE` quantile of the times between its bars (NaT for one bar).

    Unlike the median, it stays one day for a daily symbol that trades on
    some days only (most of its spacings are then longer than a day).
    """
    spacings = np.diff(index.asi8)
    if not len(spacings):
        return pd.NaT
    return pd.Timedelta(int(np.quantile(spacings, SPACING_QUANTILE, method="lower")), unit=index.unit)


def split_like_jumps(bars, adjusted_close=None):
    """The bars whose open or close jumped from the previous close by a common split ratio.

    Args:
        bars: one symbol's valid bars.
        adjusted_close: the symbol's adjusted closes on the same index, when
            the source has them but they were not applied; a jump the
            adjusted close makes too (within `SPLIT_TOLERANCE`) is a real
            move, not a split. Defaults to `None`.

    Returns:
        A list of `(time, text)`, e.g. `(Timestamp(...), "open 100.2 after
        close 401 (x0.25, a 4:1 split?)")`. Without an adjusted close, moves
        of a split's size are not split-like when the symbol makes more than
        `SPLIT_LIKE_MAX` moves three quarters that large: they are its own
        volatility (a volatility index jumps 50% several times a year).
    """
    close = bars["close"].to_numpy()
    tolerance = np.log1p(SPLIT_TOLERANCE)
    fractions = [Fraction(ratio).limit_denominator(10) for ratio in SPLIT_RATIOS]  # 1.5 reads 3:2
    ratios = [(-np.log(float(ratio)), f"a {ratio.numerator}:{ratio.denominator} split?") for ratio in fractions]
    ratios += [(np.log(float(ratio)), f"a {ratio.denominator}:{ratio.numerator} reverse split?") for ratio in fractions]
    with np.errstate(divide="ignore", invalid="ignore"):
        moves = {column: np.log(bars[column].to_numpy()[1:] / close[:-1]) for column in ("open", "close")}
        if adjusted_close is not None:
            adjusted = adjusted_close.to_numpy(dtype="float64")
            # A real move shows in the adjusted close as in the raw one; a split shows in the raw close only.
            real = np.abs(np.log(adjusted[1:] / adjusted[:-1]) - moves["close"]) < tolerance
        else:
            real = np.zeros(len(close) - 1, dtype=bool)
    jumps = {}
    close_moves = np.abs(np.nan_to_num(moves["close"]))
    for column, move in moves.items():
        for log_ratio, guess in ratios:
            # Without an adjusted close to tell, a series that often moves this far (a volatility index, a
            # small coin) is volatile rather than unadjusted: its split-sized moves are not singled out.
            if adjusted_close is None and (close_moves >= 0.75 * abs(log_ratio)).sum() > SPLIT_LIKE_MAX:
                continue
            for position in np.flatnonzero((np.abs(move - log_ratio) < tolerance) & ~real) + 1:
                jumps.setdefault(position, f"{column} {bars[column].iloc[position]:.6g} after close "
                                           f"{close[position - 1]:.6g} (x{np.exp(move[position - 1]):.3g}, {guess})")
    return [(bars.index[position], jumps[position]) for position in sorted(jumps)]


def calendar_summary(panel, num_calendars=1):
    """One line on the panel's calendars: bar spacing and how many bar times every symbol shares.

    Symbols on different calendars (stocks beside a seven-day cryptocurrency)
    share only some bar times; the line says how many and, when the backtest
    found more than one calendar group (`num_calendars`, from
    `keras_synapse.evaluation.calendars.calendar_groups`), that it holds each
    group as a sleeve on its own dates. Illiquid symbols of one calendar miss
    some bar times too, and are no sleeve.
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
    if num_calendars > 1:
        line += f" (the backtest holds the {num_calendars} calendars as sleeves, each on its own dates)"
    elif shared < panel_dates and len(panel) > 1:
        line += " (one calendar: some symbols miss some of its bar times)"
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
