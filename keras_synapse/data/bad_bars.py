"""Bad bars: every bar failing a check, found in one pass and reported per symbol and problem.

A real panel's bad bars (prices outside [low, high], zero opens, negative
volumes, a low of 0.01) are all found before anything is said, so one error
lists them all: per symbol, column and problem, the number of bars, the
first bar's time and value and the next few times. With `bad_bars="drop"`
they are dropped instead, and the drop is counted the same way.
"""

import dataclasses

import numpy as np
import pandas as pd

# What a panel does with bars failing a check: refuse the panel listing them all, or drop them (said).
BAD_BARS = ("error", "drop")
SHOWN_TIMES = 3  # times listed after a problem's first bar
# Open and close may sit a hair outside [low, high] after float rounding in a
# vendor's adjustment; anything beyond this relative tolerance is a real error.
RANGE_TOLERANCE = 1e-9

ADVICE = ("Fix the source, or drop these bars with --set bad_bars=drop (`bad_bars=\"drop\"` in load_panel); "
          "each drop is then counted per symbol and problem.")
ABSURD_ADVICE = ("An absurd value is a move no market makes in one bar: a unit or typing error, or an unadjusted "
                 "split (give adjusted prices, or an adjusted-close column, which is then used).")


@dataclasses.dataclass(frozen=True)
class BadBars:
    """The bars of one symbol that fail one check on one column.

    Args:
        symbol: the symbol.
        column: the column the check reads, e.g. `"close"`.
        problem: the check's name, e.g. `"non-positive price"`.
        times: the timestamps of every failing bar, in order.
        first: how the first failing bar reads, e.g.
            `"non-positive price at 2024-01-17 00:00:00+00:00 (value -1.0)"`.
    """

    symbol: str
    column: str
    problem: str
    times: pd.DatetimeIndex
    first: str

    def line(self):
        """One line: symbol, column, the first bar, then how many more and the next `SHOWN_TIMES` times."""
        text = f"Symbol '{self.symbol}', column '{self.column}': {self.first}"
        more = len(self.times) - 1
        if more:
            shown = ", ".join(time_text(time) for time in self.times[1:1 + SHOWN_TIMES])
            text += f"; {more} more bar{'s' if more > 1 else ''}: {shown}" + (", ..." if more > SHOWN_TIMES else "")
        return text


def find(symbol, column, problem, mask, values=None, first=None):
    """A `BadBars` for the rows where `mask` holds, or `None` when none does.

    Args:
        symbol, column, problem: as for `BadBars`.
        mask: a boolean `pandas.Series` on the bars' index.
        values: the column's values, shown for the first bar as `(value v)`.
            Defaults to `None` (no value shown).
        first: a function of the first bad time returning how that bar reads,
            instead of `"{problem} at {time} (value {v})"`. Defaults to `None`.
    """
    if not mask.any():
        return None
    times = mask.index[mask.to_numpy()]
    if first is not None:
        text = first(times[0])
    else:
        text = f"{problem} at {times[0]}"
        if values is not None:
            text += f" (value {plain(values[times[0]])!r})"
    return BadBars(str(symbol), column, problem, pd.DatetimeIndex(times), text)


def plain(value):
    """A NumPy scalar as the plain Python number (its repr reads np.float64(192.18) otherwise)."""
    return value.item() if hasattr(value, "item") else value


def time_text(time):
    """A bar time for a list: the date alone at midnight, the full timestamp otherwise."""
    return str(time.date()) if time == time.normalize() else str(time)


def bad_times(problems):
    """The union of the times of `problems` (one symbol's), sorted."""
    times = pd.DatetimeIndex([], tz="UTC")
    for problem in problems:
        times = times.union(problem.times)
    return times


def error_message(problems, refusals=(), num_symbols=None):
    """The message refusing a panel: each refusal, each problem's line, then counts and what to do.

    Args:
        problems: the `BadBars` of every symbol, in symbol order.
        refusals: messages of symbols refused as a whole (missing columns,
            unsorted timestamps, ...). Defaults to `()`.
        num_symbols: the number of symbols loaded, for "in k of n symbols";
            `None` for a single symbol's bars (no count line). Defaults to
            `None`.
    """
    lines = list(refusals) + [problem.line() for problem in problems]
    if num_symbols is None:
        return "\n".join(lines + ([ABSURD_ADVICE] if _any_absurd(problems) else []))
    if not problems and len(refusals) == 1:
        return refusals[0]
    counts = []
    if problems:
        per_symbol = _by_symbol(problems)
        num_bars = sum(len(bad_times(found)) for found in per_symbol.values())
        counts.append(f"{num_bars} bad bar{'s' if num_bars != 1 else ''} in {len(per_symbol)} of {num_symbols} "
                      f"symbol(s), listed above per symbol, column and problem (the first bar's time and value, then "
                      f"up to {SHOWN_TIMES} more times). {ADVICE}")
        if _any_absurd(problems):
            counts.append(ABSURD_ADVICE)
    if refusals:
        counts.insert(0, f"{len(refusals)} of {num_symbols} symbol(s) refused as a whole (above).")
    return "\n".join(lines + [" ".join(counts)])


def drop_summary(problems, num_symbols):
    """One line saying what `bad_bars="drop"` dropped: bars per symbol, and per column and problem."""
    per_symbol = _by_symbol(problems)
    num_bars = sum(len(bad_times(found)) for found in per_symbol.values())
    parts = []
    for symbol, found in per_symbol.items():
        detail = ", ".join(f"{problem.column} {problem.problem} {len(problem.times)}" for problem in found)
        parts.append(f"{symbol} {len(bad_times(found))} ({detail})")
    return (f"bad_bars=drop: dropped {num_bars} bad bar{'s' if num_bars != 1 else ''} in {len(per_symbol)} of "
            f"{num_symbols} symbol(s): " + "; ".join(parts) + ".")


def impossible_values(bars, symbol, non_numeric):
    """The `BadBars` (or `None`s) no market can produce: NaN, non-positive prices, negative volume, ranges.

    Args:
        bars: one symbol's float OHLCV bars.
        symbol: the symbol.
        non_numeric: column -> the mask of values that were not numbers (said
            as such, not again as NaN).
    """
    prices = ("open", "high", "low", "close")
    problems = []
    for column in (*prices, "volume"):
        problems.append(find(symbol, column, "NaN or infinite value", ~np.isfinite(bars[column]) & ~non_numeric[column],
                             bars[column]))
    for column in prices:
        problems.append(find(symbol, column, "non-positive price", bars[column] <= 0, bars[column]))
    problems.append(find(symbol, "volume", "negative volume", bars["volume"] < 0, bars["volume"]))
    # A bar already said for a missing or non-positive price is not said again for its range: one cause, one line.
    said = ~(np.isfinite(bars[list(prices)]) & (bars[list(prices)] > 0)).all(axis=1)
    slack = RANGE_TOLERANCE * bars["high"]
    below = (bars["high"] < bars["low"] - slack) & ~said
    problems.append(find(symbol, "high", "high below low", below, bars["high"]))
    for column in ("open", "close"):
        outside = ((bars[column] > bars["high"] + slack) | (bars[column] < bars["low"] - slack)) & ~said & ~below
        problems.append(find(symbol, column, "price outside [low, high]", outside, bars[column]))
    return problems


def _by_symbol(problems):
    grouped = {}
    for problem in problems:
        grouped.setdefault(problem.symbol, []).append(problem)
    return grouped


def _any_absurd(problems):
    return any(problem.problem == "absurd value" for problem in problems)
