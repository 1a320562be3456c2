"""Symbols on different calendars: one sleeve of the book per calendar, each held on its own dates.

Stocks beside a seven-day cryptocurrency share only the weekdays. On one
union calendar the equal-weight book would drop the stocks every weekend and
buy them back on Monday (buy-and-hold turning over weekly), hold them for
`horizon` bars of the wrong calendar, and annualize them by the seven-day
year. Instead, symbols whose calendars coincide form a sleeve with its share
of capital (its number of symbols over all); each sleeve is simulated on its
own calendar with its own risk controls, and the book books each sleeve's
period returns at its own rebalances, on the union of their dates.

Example:

```python
groups = calendar_groups({"GOOG": goog.index, "MSFT": msft.index, "BTC": btc.index})
# [["GOOG", "MSFT"], ["BTC"]]
```
"""

import numpy as np
import pandas as pd

# Two symbols share a calendar when, over the span both trade, this share of the busier one's bar times is common.
SHARED_CALENDAR = 0.9


def calendar_groups(symbol_calendars):
    """Symbols grouped by calendar, in first-seen order; each shares its bar times with its group's first symbol.

    Args:
        symbol_calendars: dict symbol -> that symbol's bar times
            (`DatetimeIndex`-like, sorted).

    Returns:
        A list of lists of symbols.
    """
    indexes = {symbol: pd.DatetimeIndex(times) for symbol, times in symbol_calendars.items()}
    groups = []
    for symbol, index in indexes.items():
        for group in groups:
            # Against the first member only: a universe of one calendar costs one comparison a symbol.
            if _share_calendar(index, indexes[group[0]]):
                group.append(symbol)
                break
        else:
            groups.append([symbol])
    return groups


def _share_calendar(first, second):
    start, end = max(first[0], second[0]), min(first[-1], second[-1])
    if start > end:
        return True  # they never trade at the same time: nothing to churn between them
    first, second = first[(first >= start) & (first <= end)], second[(second >= start) & (second <= end)]
    return len(first.intersection(second)) >= SHARED_CALENDAR * max(len(first), len(second))


def combine_sleeves(sleeves, shares, book_type):
    """One book from per-calendar books, each sleeve's figures scaled by its capital share.

    Args:
        sleeves: list of `Book`s, each on its own calendar.
        shares: the capital share of each sleeve (summing to 1).
        book_type: the `Book` class to build.

    Returns:
        A `Book` on the union of the sleeves' rebalance timestamps. A sleeve
        contributes at its own rebalances only: between them it holds the
        positions whose returns its rebalance booked.
    """
    timestamps = sleeves[0].timestamps
    for sleeve in sleeves[1:]:
        timestamps = timestamps.union(sleeve.timestamps)
    symbols = pd.Index(np.concatenate([sleeve.symbols.to_numpy() for sleeve in sleeves]))
    periods = len(timestamps)
    arrays = {name: np.zeros((periods, len(symbols))) for name in ("target_weights", "weights", "symbol_returns")}
    series = {name: np.zeros(periods) for name in ("gross_returns", "costs", "net_returns", "turnover")}
    flags = {name: np.zeros(periods, bool) for name in ("halted", "flattened", "stopped", "cut")}
    period_ends = np.full(periods, np.iinfo(np.int64).min)  # NaT, below every time
    column = 0
    for sleeve, share in zip(sleeves, shares):
        rows = timestamps.get_indexer(sleeve.timestamps)
        columns = slice(column, column + len(sleeve.symbols))
        arrays["target_weights"][rows, columns] = share * sleeve.target_weights
        arrays["weights"][rows, columns] = share * sleeve.weights
        arrays["symbol_returns"][rows, columns] = sleeve.symbol_returns
        for name in series:
            series[name][rows] += share * getattr(sleeve, name)
        for name in flags:
            flags[name][rows] |= getattr(sleeve, name)
        # The last of the sleeves' period ends (NaT, a period running past the calendar, counts as the latest).
        ends = sleeve.period_ends.as_unit("ns").asi8
        period_ends[rows] = np.where(ends == np.iinfo(np.int64).min, np.iinfo(np.int64).max,
                                     np.maximum(period_ends[rows], ends))
        column += len(sleeve.symbols)
    period_ends = np.where(period_ends == np.iinfo(np.int64).max, np.iinfo(np.int64).min, period_ends)
    period_ends = pd.DatetimeIndex(period_ends.astype("datetime64[ns]"))
    if timestamps.tz is not None:
        period_ends = period_ends.tz_localize("UTC").tz_convert(timestamps.tz)
    return book_type(timestamps=timestamps, period_ends=period_ends, symbols=symbols, **arrays,
                     **series, **flags, probability_source=sleeves[0].probability_source)
