"""Where live bars come from: a replay of stored bars, or Alpaca's market data API polled through alpaca-py.

A source offers `history()` (the warm-up bars the features need before the
first traded bar) and `poll(after)` (completed bars stamped after `after`,
`{symbol: frame}`, empty when none arrived yet).
"""

import datetime

import pandas as pd

from keras_synapse.data.panel import OHLCV_COLUMNS, standardize_columns
from keras_synapse.errors import ConfigError, DataError


class ReplayBars:
    """Replays stored bars one bar time per poll, as a live session would receive them.

    Args:
        panel: `{symbol: OHLCV frame}` (a `Panel`), one shared calendar.
        warmup_bars: bars handed over as history before trading starts, >= 1.
    """

    def __init__(self, panel, warmup_bars):
        self.panel = {symbol: frame for symbol, frame in panel.items()}
        self.calendar = pd.DatetimeIndex(sorted({t for frame in self.panel.values() for t in frame.index}))
        if not 1 <= warmup_bars < len(self.calendar):
            raise ConfigError(f"`warmup_bars` must be in [1, {len(self.calendar) - 1}] for {len(self.calendar)} bars. "
                              f"Received: warmup_bars={warmup_bars}")
        self.warmup_bars = int(warmup_bars)
        self.exhausted = False

    def history(self):
        first_traded = self.calendar[self.warmup_bars]
        return {symbol: frame[frame.index < first_traded] for symbol, frame in self.panel.items()}

    def poll(self, after):
        start = self.warmup_bars if after is None else self.calendar.searchsorted(pd.Timestamp(after), side="right")
        start = max(start, self.warmup_bars)
        if start >= len(self.calendar):
            self.exhausted = True
            return {}
        timestamp = self.calendar[start]
        self.exhausted = start == len(self.calendar) - 1
        return {symbol: frame.loc[[timestamp]] for symbol, frame in self.panel.items() if timestamp in frame.index}


class AlpacaBars:
    """Completed stock bars from Alpaca's market data API (alpaca-py's `StockHistoricalDataClient`).

    Keys come from `APCA_API_KEY_ID` and `APCA_API_SECRET_KEY`, as for the
    `alpaca` data source. A bar still forming (its period not over yet) is
    left for a later poll, so a daily strategy trades each day's bar once,
    after the close.

    Args:
        symbols: stock symbols.
        warmup_bars: bars of history handed over before trading starts.
        timeframe: an Alpaca timeframe, e.g. `"1Day"`. Defaults to `"1Day"`.
        url_override: the data API's base URL (a test server). Defaults to
            `None`: Alpaca's own.
        history_start: where the warm-up history is looked for from (a
            date). Defaults to `None`: far enough back for `warmup_bars`.
        now: a callable returning the current UTC time. Defaults to
            `pandas.Timestamp.now(tz="UTC")`.
    """

    def __init__(self, symbols, warmup_bars, timeframe="1Day", url_override=None, history_start=None, now=None):
        from alpaca.data.historical import StockHistoricalDataClient

        from keras_synapse.data.alpaca import _parse_timeframe, stock_keys

        self.symbols = list(symbols)
        self.warmup_bars = int(warmup_bars)
        self.timeframe = _parse_timeframe(timeframe)
        self.period = pd.Timedelta(_timeframe_length(timeframe))
        key_id, secret_key = stock_keys()
        self.client = StockHistoricalDataClient(key_id, secret_key, raw_data=True, url_override=url_override)
        self.now = now or (lambda: pd.Timestamp.now(tz="UTC"))
        self.history_start = _utc(history_start) if history_start is not None else None

    def history(self):
        # Enough calendar days for `warmup_bars` trading bars, then the last of them.
        start = self.history_start
        if start is None:  # calendar days enough for `warmup_bars` bars, with weekends and holidays
            start = self.now() - (self.period * self.warmup_bars * 2 + pd.Timedelta(days=10))
        bars = self._bars(start)
        if not bars:
            raise DataError(f"alpaca data: no bars for {self.symbols} since {start}")
        return {symbol: frame.iloc[-self.warmup_bars:] for symbol, frame in bars.items()}

    def poll(self, after):
        after = pd.Timestamp(after)
        bars = self._bars(after + pd.Timedelta(seconds=1))
        return {symbol: frame[frame.index > after] for symbol, frame in bars.items() if (frame.index > after).any()}

    def _bars(self, start):
        from alpaca.common.exceptions import APIError
        from alpaca.data.enums import Adjustment
        from alpaca.data.requests import StockBarsRequest

        from keras_synapse.errors import BrokerError

        request = StockBarsRequest(symbol_or_symbols=self.symbols, timeframe=self.timeframe,
                                   start=pd.Timestamp(start).to_pydatetime(), adjustment=Adjustment.ALL)
        try:
            raw = self.client.get_stock_bars(request)
        except APIError as error:
            status = error.status_code
            raise BrokerError(f"alpaca data: HTTP {status} for {self.symbols}", transient=status in (None, 429)
                              or (status or 0) >= 500, status=status) from None
        except OSError as error:
            raise BrokerError(f"alpaca data: unreachable ({type(error).__name__})", transient=True) from None
        complete_before = self.now()
        frames = {}
        for symbol in self.symbols:
            rows = raw.get(symbol) or []
            if not rows:
                continue
            frame = standardize_columns(pd.DataFrame(rows).rename(columns={"t": "timestamp"}),
                                        where=f"alpaca '{symbol}'")
            frames[symbol] = frame[frame.index + self.period <= complete_before][list(OHLCV_COLUMNS)]
        return frames


def _timeframe_length(timeframe):
    amount, unit = int("".join(c for c in timeframe if c.isdigit())), timeframe.lstrip("0123456789")
    return {"Min": datetime.timedelta(minutes=amount), "Hour": datetime.timedelta(hours=amount),
            "Day": datetime.timedelta(days=amount), "Week": datetime.timedelta(weeks=amount),
            "Month": datetime.timedelta(days=30 * amount)}[unit]


def _utc(value):
    timestamp = pd.Timestamp(value)
    return timestamp.tz_localize("UTC") if timestamp.tz is None else timestamp.tz_convert("UTC")
