"""Multi-timeframe features: returns, volatility, volume and range at 4..256 bars.

One block of four features at each of seven horizons, doubling from 4 to 256
bars (about an hour to nine days of 15-minute bars, or a week to a year of
daily bars), so a model sees momentum and risk at every scale at once. All
are trailing pandas rolling operations (no centered windows), so the value at
bar t uses bars at or before t only.
"""

import numpy as np
import pandas as pd

MULTISCALE_WINDOWS = (4, 8, 16, 32, 64, 128, 256)
# The 256-bar log return needs the close 256 bars back: first value at row 256.
MULTISCALE_WARMUP = max(MULTISCALE_WINDOWS) + 1


def multiscale_features(bars, references=None):
    """Computes the multi-timeframe features of one symbol's bars.

    For each window `w` in `MULTISCALE_WINDOWS` (4, 8, ..., 256):

    - `log_return_{w}`: log(close[t] / close[t - w]).
    - `realized_volatility_{w}`: sample standard deviation (ddof 1) of the
      last `w` one-bar log returns (not annualized).
    - `volume_zscore_{w}`: log(1 + volume) minus its mean over the last `w`
      bars (this one included), divided by their standard deviation; 0 where
      that volume is constant (e.g. an index that reports none).
    - `log_range_{w}`: log(highest high / lowest low) over the last `w` bars.

    Args:
        bars: one symbol's canonical OHLCV frame (see `Panel`).
        references: unused; accepted so that the function fits the
            `FeatureSet.compute(bars, references)` signature. Defaults to
            `None`.

    Returns:
        A float64 frame of 28 columns on `bars.index`, grouped by window
        (`log_return_4`, `realized_volatility_4`, `volume_zscore_4`,
        `log_range_4`, `log_return_8`, ...); the first
        `MULTISCALE_WARMUP - 1` rows hold NaN (warm-up), every later row is
        finite.
    """
    log_close = np.log(bars["close"])
    log_return = log_close.diff()
    log_volume = np.log1p(bars["volume"])
    log_high = np.log(bars["high"])
    log_low = np.log(bars["low"])
    columns = {}
    for window in MULTISCALE_WINDOWS:
        volume_mean = log_volume.rolling(window).mean()
        volume_std = log_volume.rolling(window).std()
        columns[f"log_return_{window}"] = log_close.diff(window)
        columns[f"realized_volatility_{window}"] = log_return.rolling(window).std()
        # A constant volume has no surprise: score it 0 instead of dividing by zero.
        columns[f"volume_zscore_{window}"] = (
            ((log_volume - volume_mean) / volume_std.where(volume_std > 0)).where(volume_std > 0, 0.0)
        ).where(volume_mean.notna())
        columns[f"log_range_{window}"] = log_high.rolling(window).max() - log_low.rolling(window).min()
    return pd.DataFrame(columns, index=bars.index, dtype="float64")
