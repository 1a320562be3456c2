"""The classical strategies of seeds 000 and 003, as sides a backtest can trade or a model can filter.

Each gives, at every bar, the side a textbook rule takes (+1 long, -1 short,
0 flat) from TA-Lib's indicator values on bars up to and including that bar
(TA-Lib runs forward, so truncating the bars after t changes nothing at t):

- `rsi_reversion`: long below RSI(14) 30, short above 70.
- `macd_trend`: the sign of MACD(12, 26) minus its 9-bar signal line.
- `bollinger_reversion`: long below the lower band, short above the upper
  (20 bars, 2 standard deviations).
- `vwap_reversion`: long below the 20-bar volume-weighted average price,
  short above it (the typical price `(high + low + close) / 3` weighted by
  volume; bars without volume use its plain average).
- `momentum`: the sign of the 20-bar return.

Example:

```python
sides = classical_sides(bars)          # a frame, one column per strategy
sides.loc[timestamp, "rsi_reversion"]
```
"""

import numpy as np
import pandas as pd
import talib

from keras_synapse.features.technical import (
    BOLLINGER_DEVIATIONS,
    BOLLINGER_PERIOD,
    MACD_FAST_PERIOD,
    MACD_SIGNAL_PERIOD,
    MACD_SLOW_PERIOD,
    RSI_PERIOD,
    VWAP_WINDOW,
)

CLASSICAL_STRATEGIES = ("rsi_reversion", "macd_trend", "bollinger_reversion", "vwap_reversion", "momentum")
# The columns `classical_columns` adds to a prediction frame: `classical_<strategy>`.
COLUMN_PREFIX = "classical_"
RSI_OVERSOLD, RSI_OVERBOUGHT = 30.0, 70.0
MOMENTUM_BARS = 20


def classical_sides(bars):
    """Each classical strategy's side at every bar of one symbol.

    Args:
        bars: one symbol's canonical OHLCV frame.

    Returns:
        A float frame indexed like `bars`, one column per
        `CLASSICAL_STRATEGIES`, values -1, 0 or +1 (0 while an indicator
        warms up).
    """
    high, low, close, volume = (np.ascontiguousarray(bars[name].to_numpy(dtype="float64"))
                                for name in ("high", "low", "close", "volume"))
    rsi = talib.RSI(close, timeperiod=RSI_PERIOD)
    macd, signal, _ = talib.MACD(close, fastperiod=MACD_FAST_PERIOD, slowperiod=MACD_SLOW_PERIOD,
                                 signalperiod=MACD_SIGNAL_PERIOD)
    upper, _, lower = talib.BBANDS(close, timeperiod=BOLLINGER_PERIOD, nbdevup=BOLLINGER_DEVIATIONS,
                                   nbdevdn=BOLLINGER_DEVIATIONS, matype=talib.MA_Type.SMA)
    typical = talib.TYPPRICE(high, low, close)
    window_volume = talib.SUM(volume, timeperiod=VWAP_WINDOW)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(window_volume > 0, talib.SUM(typical * volume, timeperiod=VWAP_WINDOW) / window_volume,
                        talib.SMA(typical, timeperiod=VWAP_WINDOW))
    past = np.concatenate([np.full(MOMENTUM_BARS, np.nan), close[:-MOMENTUM_BARS]])[: len(close)]
    with np.errstate(invalid="ignore"):
        sides = {
            "rsi_reversion": np.where(rsi < RSI_OVERSOLD, 1.0, np.where(rsi > RSI_OVERBOUGHT, -1.0, 0.0)),
            "macd_trend": np.sign(macd - signal),
            "bollinger_reversion": np.where(close < lower, 1.0, np.where(close > upper, -1.0, 0.0)),
            "vwap_reversion": -np.sign(close - vwap),
            "momentum": np.sign(close - past),
        }
    return pd.DataFrame({name: np.nan_to_num(values) for name, values in sides.items()}, index=bars.index)


def classical_columns(frame, panel, prefix=COLUMN_PREFIX):
    """The classical sides at each row's `symbol` and `timestamp`, as `<prefix><strategy>` columns.

    Args:
        frame: rows with `symbol` and `timestamp` (UTC).
        panel: the bars (a `Panel` or mapping symbol -> bars).

    Returns:
        A dict column name -> float array aligned with `frame`'s rows.
    """
    columns = {f"{prefix}{name}": np.zeros(len(frame)) for name in CLASSICAL_STRATEGIES}
    timestamps = pd.DatetimeIndex(frame["timestamp"])
    for symbol, rows in frame.groupby("symbol", sort=False).indices.items():
        sides = classical_sides(panel[symbol])
        located = sides.reindex(timestamps[rows].tz_convert(sides.index.tz))
        for name in CLASSICAL_STRATEGIES:
            columns[f"{prefix}{name}"][rows] = located[name].fillna(0.0).to_numpy()
    return columns
