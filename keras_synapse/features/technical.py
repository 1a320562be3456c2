"""Technical indicators through TA-Lib, made scale-free, past bars only.

The indicators a trader's strategies use (RSI, MACD, Bollinger Bands, VWAP,
ATR, OBV, stochastics, ADX, CCI, Williams %R, MFI, ROC, moving averages),
each computed by TA-Lib and then expressed so that two symbols at different
price and volume levels give comparable numbers: bounded oscillators stay as
TA-Lib returns them, price-unit outputs become ratios or log-distances to
the close, and volume levels become fractions of traded volume.

Why the values use past bars only: TA-Lib runs every indicator forward from
the first bar it is given, so the value at bar t depends on bars 0..t and
never on later ones. Computing on `bars[: t + 1]` gives bit-identical values
at every row <= t (checked in `tests/features/test_technical.py`).

What does depend on the *first* bar: indicators with exponential (Wilder)
smoothing (RSI, MACD, ATR/NATR, ADX and +DI/-DI) are seeded from their first
window and forget that seed only geometrically. Two computations that start
at different bars agree to 1e-9 only after ~200 (MACD), ~250 (NATR) and
~300-360 (RSI, ADX, DI) bars of common history. Training computes on the
full history, so an inference service must give the same start (or at least
~400 bars more than `TECHNICAL_WARMUP`) to reproduce training's values.

The results also depend on TA-Lib's process-wide settings
(`talib.set_unstable_period`, `talib.set_compatibility`); they are assumed to
be left at their defaults (0 and 0), for which `TECHNICAL_WARMUP` is exact.

The intraday session VWAP is a separate function, `session_vwap_distance`,
because on daily bars (one bar per session) it degenerates to
`log(close / typical price)` and a feature set must produce the same columns
whatever the bar frequency.
"""

import numpy as np
import pandas as pd
import talib

from keras_synapse.errors import ConfigError, DataError

RSI_PERIOD = 14
MACD_FAST_PERIOD = 12
MACD_SLOW_PERIOD = 26
MACD_SIGNAL_PERIOD = 9
BOLLINGER_PERIOD = 20
BOLLINGER_DEVIATIONS = 2.0
ATR_PERIOD = 14
VWAP_WINDOW = 20
OBV_WINDOW = 20
STOCHASTIC_K_PERIOD = 14
STOCHASTIC_SMOOTHING = 3
ADX_PERIOD = 14
CCI_PERIOD = 20
WILLIAMS_R_PERIOD = 14
MFI_PERIOD = 14
ROC_PERIOD = 10
SHORT_TREND_PERIOD = 50
LONG_TREND_PERIOD = 200

# The longest lookback is the 200-bar simple moving average (first value at
# row 199); the next longest are MACD (row 33) and ADX (row 27).
TECHNICAL_WARMUP = LONG_TREND_PERIOD

SESSION_VWAP_WARMUP = 1


def _as_arrays(bars):
    # TA-Lib needs contiguous float64 arrays.
    return tuple(
        np.ascontiguousarray(bars[name].to_numpy(dtype="float64")) for name in ("high", "low", "close", "volume")
    )


def _lag(values, periods):
    lagged = np.full_like(values, np.nan)
    if len(values) > periods:
        lagged[periods:] = values[:-periods]
    return lagged


def technical_features(bars, references=None):
    """Computes the technical indicator features of one symbol's bars.

    Features (TA-Lib's default definitions; periods in the names):

    - `rsi_14`: relative strength index, 0..100.
    - `macd_to_close`, `macd_signal_to_close`, `macd_histogram_to_close`:
      MACD (12, 26, 9) line, signal and histogram divided by the close, so
      that they are fractions of the price instead of price units.
    - `bollinger_percent_b_20`: (close - lower band) / (upper - lower) for
      the 20-bar, 2-standard-deviation bands: 0 at the lower band, 1 at the
      upper; 0.5 when the bands have zero width (a constant close).
    - `bollinger_bandwidth_20`: (upper - lower) / middle band.
    - `natr_14`: average true range (Wilder, 14) as a percentage of the
      close (TA-Lib's NATR), i.e. `100 * ATR / close`.
    - `vwap_distance_20`: log(close / VWAP) with the VWAP of the typical
      price (high + low + close) / 3 over the last 20 bars; where those 20
      bars have no volume, the VWAP is the plain mean of the typical price.
    - `obv_change_20`: the change of on-balance volume over 20 bars divided
      by the volume traded in those bars, in -1..1 (1: every bar closed up);
      0 where no volume traded. Raw OBV levels drift and scale with the
      symbol's volume, so they are not used.
    - `stochastic_k_14`, `stochastic_d_14`: slow stochastic %K (14-bar,
      smoothed over 3) and %D (3-bar mean of %K), 0..100.
    - `adx_14`, `plus_di_14`, `minus_di_14`: average directional index and
      the directional indicators, 0..100.
    - `cci_20`: commodity channel index (unbounded, mostly within +-300).
    - `williams_r_14`: Williams %R, -100..0.
    - `mfi_14`: money flow index, 0..100; 50 where the 14 bars traded no
      volume (an index that reports none).
    - `roc_10`: rate of change over 10 bars, in percent.
    - `close_to_sma_50`, `close_to_sma_200`: log(close / simple moving
      average): the trend regime (above or below the 200-bar average).

    Args:
        bars: one symbol's canonical OHLCV frame (see `Panel`).
        references: unused; accepted so that the function fits the
            `FeatureSet.compute(bars, references)` signature. Defaults to
            `None`.

    Returns:
        A float64 frame on `bars.index`; the first `TECHNICAL_WARMUP - 1`
        rows hold NaN (warm-up), every later row is finite.
    """
    high, low, close, volume = _as_arrays(bars)
    macd, macd_signal, macd_histogram = talib.MACD(
        close, fastperiod=MACD_FAST_PERIOD, slowperiod=MACD_SLOW_PERIOD, signalperiod=MACD_SIGNAL_PERIOD
    )
    upper_band, middle_band, lower_band = talib.BBANDS(
        close,
        timeperiod=BOLLINGER_PERIOD,
        nbdevup=BOLLINGER_DEVIATIONS,
        nbdevdn=BOLLINGER_DEVIATIONS,
        matype=talib.MA_Type.SMA,
    )
    band_width = upper_band - lower_band
    # A constant close has zero-width bands; it sits in the middle of them.
    percent_b = np.divide(close - lower_band, band_width, out=np.full_like(close, 0.5), where=band_width > 0)
    percent_b[np.isnan(band_width)] = np.nan

    typical_price = talib.TYPPRICE(high, low, close)
    window_volume = talib.SUM(volume, timeperiod=VWAP_WINDOW)
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap = np.where(
            window_volume > 0,
            talib.SUM(typical_price * volume, timeperiod=VWAP_WINDOW) / window_volume,
            talib.SMA(typical_price, timeperiod=VWAP_WINDOW),
        )

    on_balance_volume = talib.OBV(close, volume)
    obv_window_volume = talib.SUM(volume, timeperiod=OBV_WINDOW)
    obv_change = on_balance_volume - _lag(on_balance_volume, OBV_WINDOW)
    obv_fraction = np.divide(obv_change, obv_window_volume, out=np.zeros_like(close), where=obv_window_volume > 0)
    obv_fraction[np.isnan(obv_change)] = np.nan

    stochastic_k, stochastic_d = talib.STOCH(
        high,
        low,
        close,
        fastk_period=STOCHASTIC_K_PERIOD,
        slowk_period=STOCHASTIC_SMOOTHING,
        slowk_matype=talib.MA_Type.SMA,
        slowd_period=STOCHASTIC_SMOOTHING,
        slowd_matype=talib.MA_Type.SMA,
    )
    money_flow_index = talib.MFI(high, low, close, volume, timeperiod=MFI_PERIOD)
    # TA-Lib scores a window without volume 0 (maximally oversold); no money
    # flowed either way, so it is neutral.
    no_volume = talib.SUM(volume, timeperiod=MFI_PERIOD) == 0
    money_flow_index[no_volume & ~np.isnan(money_flow_index)] = 50.0

    log_close = np.log(close)
    return pd.DataFrame(
        {
            "rsi_14": talib.RSI(close, timeperiod=RSI_PERIOD),
            "macd_to_close": macd / close,
            "macd_signal_to_close": macd_signal / close,
            "macd_histogram_to_close": macd_histogram / close,
            "bollinger_percent_b_20": percent_b,
            "bollinger_bandwidth_20": band_width / middle_band,
            "natr_14": talib.NATR(high, low, close, timeperiod=ATR_PERIOD),
            "vwap_distance_20": log_close - np.log(vwap),
            "obv_change_20": obv_fraction,
            "stochastic_k_14": stochastic_k,
            "stochastic_d_14": stochastic_d,
            "adx_14": talib.ADX(high, low, close, timeperiod=ADX_PERIOD),
            "plus_di_14": talib.PLUS_DI(high, low, close, timeperiod=ADX_PERIOD),
            "minus_di_14": talib.MINUS_DI(high, low, close, timeperiod=ADX_PERIOD),
            "cci_20": talib.CCI(high, low, close, timeperiod=CCI_PERIOD),
            "williams_r_14": talib.WILLR(high, low, close, timeperiod=WILLIAMS_R_PERIOD),
            "mfi_14": money_flow_index,
            "roc_10": talib.ROC(close, timeperiod=ROC_PERIOD),
            "close_to_sma_50": log_close - np.log(talib.SMA(close, timeperiod=SHORT_TREND_PERIOD)),
            "close_to_sma_200": log_close - np.log(talib.SMA(close, timeperiod=LONG_TREND_PERIOD)),
        },
        index=bars.index,
        dtype="float64",
    )


def session_vwap_distance(bars, session_tz="America/New_York"):
    """Computes the log-distance of the close from the session VWAP, for intraday bars.

    The session VWAP at bar t is the volume-weighted mean of the typical
    price (high + low + close) / 3 over the bars from the session's first
    bar through t. A session is a calendar day in `session_tz`, so the
    cumulation restarts with the first bar of each day; pre- and post-market
    bars of that day belong to it (filter them out beforehand to anchor on
    the regular session). While a session has traded no volume yet, the
    plain mean of the typical price stands in for the VWAP.

    Meant for intraday bars. On daily bars each session holds one bar and
    the value degenerates to `log(close / typical price)`, a position within
    the bar rather than a VWAP distance; use `technical_features`'
    `vwap_distance_20` there.

    Args:
        bars: one symbol's canonical OHLCV frame (see `Panel`); naive
            timestamps are taken as UTC.
        session_tz: the IANA time zone whose calendar days delimit the
            sessions, e.g. `"America/New_York"` for US equities or `"UTC"`
            for crypto. Defaults to `"America/New_York"`.

    Returns:
        A float64 frame on `bars.index` with the single column
        `session_vwap_distance`; every row is finite
        (`SESSION_VWAP_WARMUP` is 1).

    Raises:
        ConfigError: if `session_tz` is not a known time zone.
        DataError: if `bars` is not indexed by timestamps.

    Example:

    >>> bars = pd.DataFrame(
    ...     {"open": 10.0, "high": 10.0, "low": 10.0, "close": 10.0, "volume": 5.0},
    ...     index=pd.date_range("2024-01-02 14:30", periods=3, freq="min", tz="UTC"),
    ... )
    >>> session_vwap_distance(bars)["session_vwap_distance"].tolist()
    [0.0, 0.0, 0.0]
    """
    if not isinstance(bars.index, pd.DatetimeIndex):
        raise DataError(
            f"`bars` must be indexed by timestamps (a DatetimeIndex). Received: {type(bars.index).__name__}"
        )
    index = bars.index if bars.index.tz is not None else bars.index.tz_localize("UTC")
    try:
        local_index = index.tz_convert(session_tz)
    except (KeyError, ValueError, TypeError, AttributeError):
        raise ConfigError(
            "`session_tz` must be a time zone name such as 'America/New_York' or 'UTC'. "
            f"Received: session_tz={session_tz!r}"
        ) from None
    # Wall-clock midnight of each bar's local day identifies its session.
    session = local_index.tz_localize(None).normalize()

    high, low, close, volume = _as_arrays(bars)
    typical_price = talib.TYPPRICE(high, low, close)
    running = (
        pd.DataFrame({"price_volume": typical_price * volume, "volume": volume, "price": typical_price, "count": 1.0})
        .groupby(np.asarray(session))
        .cumsum()
    )
    cumulative_volume = running["volume"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap = np.where(
            cumulative_volume > 0,
            running["price_volume"].to_numpy() / cumulative_volume,
            running["price"].to_numpy() / running["count"].to_numpy(),
        )
    return pd.DataFrame({"session_vwap_distance": np.log(close) - np.log(vwap)}, index=bars.index, dtype="float64")
