"""Exchange calendars: daily bars counted in their exchange's trading sessions, so a holiday is not an outage.

The gap rule (`keras_synapse.windows.dataset.complete_windows`) drops windows
that span a spacing longer than `max_gap_factor` times the symbol's median
spacing. In calendar days a week-long closure (the Spring Festival, National
Day, a year-end) looks like a data outage; in the exchange's own sessions
it is one step, like any other day. With `exchange_calendar` set, a daily
symbol's bar times are replaced, for the gap rule only, by their position
in the exchange's session list (from the maintained `exchange_calendars`
package), one day per session: a closure costs nothing, a symbol that
misses sessions the exchange held still shows its gap.

The setting names one calendar for every symbol (`XNYS`, `XSHG`, `XKRX`,
... : `exchange_calendars.get_calendar_names()`), optionally with
per-symbol exceptions: `"XNYS;7203.T=XTKS;BHP.AX=XASX"`. Intraday bars keep
their learned session hours (`keras_synapse.windows.sessions`).

Example:

>>> import pandas as pd
>>> calendars = ExchangeCalendars.parse("XSHG")
>>> dates = pd.DatetimeIndex(["2020-01-23", "2020-02-03"], tz="UTC")  # the Spring Festival between them
>>> int(np.diff(calendars.gap_times("600519.SS", dates))[0] // DAY)
1
"""

import dataclasses

import numpy as np

from keras_synapse.errors import ConfigError, DataError

DAY = 24 * 3_600 * 10**9


@dataclasses.dataclass(frozen=True)
class ExchangeCalendars:
    """Which exchange's sessions each symbol's daily bars are counted in.

    Attributes:
        default: the calendar of every symbol not named below; `""` for
            none (the gap rule then counts calendar time).
        per_symbol: `(symbol, calendar)` pairs.
    """

    default: str = ""
    per_symbol: tuple = ()

    @classmethod
    def parse(cls, text):
        """`"XNYS;7203.T=XTKS"` -> `ExchangeCalendars("XNYS", (("7203.T", "XTKS"),))`, every name checked.

        Raises:
            ConfigError: for a malformed part or an unknown calendar name (with the closest names).
        """
        default, per_symbol = "", []
        for part in filter(None, (piece.strip() for piece in str(text).split(";"))):
            symbol, separator, code = (piece.strip() for piece in part.partition("="))
            if not separator:
                if default:
                    raise ConfigError(f"`exchange_calendar` names two calendars for every symbol ({default!r} and "
                                      f"{symbol!r}); name others per symbol: 'XNYS;SYMBOL=XTKS'. Received: {text!r}")
                default = symbol
            elif not symbol or not code:
                raise ConfigError(f"`exchange_calendar` expects CALENDAR or SYMBOL=CALENDAR parts separated by ';', "
                                  f"e.g. 'XNYS;7203.T=XTKS'. Received: {part!r}")
            else:
                per_symbol.append((symbol, code))
        calendars = cls(default, tuple(per_symbol))
        for code in {calendars.default, *dict(calendars.per_symbol).values()} - {""}:
            _check_name(code)
        return calendars

    def __bool__(self):
        return bool(self.default or self.per_symbol)

    def code_for(self, symbol):
        """The calendar of `symbol`, `""` for none."""
        return dict(self.per_symbol).get(symbol, self.default)

    def gap_times(self, symbol, index):
        """The int64 nanosecond times the gap rule reads for `symbol`'s bars.

        Daily (or coarser) bars of a symbol with a calendar: the bar's
        position in the exchange's sessions, one day per session. Otherwise
        the bars' own times.

        Raises:
            DataError: when the bars lie outside the years the calendar covers.
        """
        times = index.as_unit("ns").asi8
        code = self.code_for(symbol)
        if not code or len(index) < 2 or np.median(np.diff(times)) < 0.9 * DAY:
            return times
        dates = index.tz_convert("UTC").tz_localize(None).normalize()
        sessions = _sessions(code, dates[0], dates[-1], symbol)
        # A bar on a day the exchange was closed takes the next session's place: a step of zero, never a gap.
        return np.searchsorted(sessions.to_numpy(), dates.to_numpy()).astype(np.int64) * DAY


def _check_name(code):
    import difflib

    import exchange_calendars

    names = exchange_calendars.get_calendar_names()
    if code not in names:
        close = difflib.get_close_matches(code, names, n=3)
        raise ConfigError(f"`exchange_calendar`: no calendar {code!r}" + (f"; did you mean {', '.join(close)}?" if close
                          else f". Names: {', '.join(sorted(names))}") + f" Received: {code!r}")


def _sessions(code, first, last, symbol):
    import exchange_calendars

    try:
        calendar = exchange_calendars.get_calendar(code, start=first - np.timedelta64(10, "D"),
                                                   end=last + np.timedelta64(10, "D"))
    except Exception as error:  # the package's own errors name the calendar's bounds
        raise DataError(f"Symbol '{symbol}': the exchange calendar {code} cannot cover its bars {first.date()} .. "
                        f"{last.date()}: {error}") from None
    return calendar.sessions
