"""Trading sessions: which long spacings between bars are the market's own closures, and which are outages.

A daily bar's weekend is three bars' time, well inside the gap rule's
`max_gap_factor` x the median spacing. Intraday bars close every night or
weekend, far beyond it, and the rule alone would throw away every window
spanning one (one EURUSD hourly window in six). A closure is regular: the
market closes at the same clock time week after week, and reopens at the
same time. `SessionHours` holds those UTC hours (two of each where daylight
saving moves the session), learned from the bars of every symbol; a long
spacing is a closure when it starts at a closing hour, ends at an opening
hour and lasts at most `MAX_CLOSURE` (a weekend with a holiday), and an
outage otherwise.

Learning the hours reads only bar times, never prices or labels, so it may
see the whole panel; the model card records them and inference applies the
same hours.

Example:

```python
sessions = learn_session_hours([frame.index for frame in panel.values()], max_gap_factor=5.0)
breaks = gap_breaks(frame.index.asi8, 5.0, sessions)   # True where an outage ends
```
"""

import dataclasses

import numpy as np

HOUR = 3_600 * 10**9
DAY = 24 * HOUR
WEEK = 7 * DAY
MAX_CLOSURE = 5 * DAY
# A closing hour must recur in this many weeks, and in this share of the weeks the bars span.
MIN_WEEKS = 3
MIN_WEEK_SHARE = 0.1


@dataclasses.dataclass(frozen=True)
class SessionHours:
    """The UTC hours at which a market regularly closes (its last bar's hour) and reopens (its first bar's).

    Attributes:
        closes: sorted hours 0-23.
        opens: sorted hours 0-23.
    """

    closes: tuple = ()
    opens: tuple = ()

    def __bool__(self):
        return bool(self.closes and self.opens)

    def to_dict(self):
        return {"closes": list(self.closes), "opens": list(self.opens)}

    @classmethod
    def from_dict(cls, values):
        """The inverse of `to_dict`; `None` (a card written before sessions) gives no sessions."""
        values = values or {}
        return cls(tuple(int(hour) for hour in values.get("closes", ())),
                   tuple(int(hour) for hour in values.get("opens", ())))

    def describe(self):
        if not self:
            return "no regular closures (daily or continuous bars)"
        return (f"regular closures start at a bar of UTC hour {_hours_text(self.closes)} and end at one of "
                f"{_hours_text(self.opens)} within {MAX_CLOSURE // DAY} days")


def _hours_text(hours):
    return " or ".join(f"{hour:02d}:00" for hour in hours)


def learn_session_hours(indexes, max_gap_factor):
    """The closing and opening hours that recur in the long spacings of intraday bars.

    Args:
        indexes: one `DatetimeIndex` (or int64 nanoseconds) per symbol.
        max_gap_factor: the gap rule's factor; spacings above it times the
            symbol's median are the candidates. `0` (rule off) learns nothing.

    Returns:
        A `SessionHours`, empty for daily or coarser bars and for bars that
        never close.
    """
    closes, opens = set(), set()
    if max_gap_factor <= 0:
        return SessionHours()
    for index in indexes:
        timestamps = _nanoseconds(index)
        if len(timestamps) < 3:
            continue
        spacing = np.diff(timestamps)
        median = np.median(spacing)
        if median >= DAY:  # daily bars carry no clock time; their weekends are within the factor anyway
            continue
        long = np.flatnonzero(spacing > max_gap_factor * median)
        weeks_spanned = max(1, (timestamps[-1] - timestamps[0]) // WEEK)
        closes |= _recurring_hours(timestamps[long], weeks_spanned)
        opens |= _recurring_hours(timestamps[long + 1], weeks_spanned)
    return SessionHours(tuple(sorted(closes)), tuple(sorted(opens)))


def _nanoseconds(index):
    if hasattr(index, "as_unit"):  # pandas may hold microseconds (dates read from CSV)
        return index.as_unit("ns").asi8
    return np.asarray(index, dtype=np.int64)


def _recurring_hours(timestamps, weeks_spanned):
    hours, weeks = (timestamps // HOUR) % 24, timestamps // WEEK
    needed = max(MIN_WEEKS, MIN_WEEK_SHARE * weeks_spanned)
    return {int(hour) for hour in np.unique(hours) if len(np.unique(weeks[hours == hour])) >= needed}


def outages(starts, ends, limit, sessions):
    """True where the spacing from `starts` to `ends` (int64 ns) exceeds `limit` and is not a session closure."""
    spacing = ends - starts
    long = spacing > limit
    if not sessions or not long.any():
        return long
    closure = (np.isin((starts // HOUR) % 24, sessions.closes) & np.isin((ends // HOUR) % 24, sessions.opens)
               & (spacing <= MAX_CLOSURE))
    return long & ~closure


def gap_breaks(timestamps, max_gap_factor, sessions=None):
    """True at each row whose spacing from the previous row is an outage (the first row: False).

    Args:
        timestamps: int64 nanoseconds of one symbol's rows, increasing (or
            a `DatetimeIndex`).
        max_gap_factor: a spacing above this multiple of the median spacing
            is long; `0` disables the rule.
        sessions: `SessionHours` whose closures are not outages, or `None`.
    """
    if max_gap_factor <= 0 or len(timestamps) < 3:
        return np.zeros(len(timestamps), dtype=bool)
    timestamps = _nanoseconds(timestamps)
    limit = max_gap_factor * np.median(np.diff(timestamps))
    return np.concatenate([[False], outages(timestamps[:-1], timestamps[1:], limit, sessions)])
