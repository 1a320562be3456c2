"""Raw OHLCV bars, made stationary, for models that learn their own features.

A hybrid model reads the bars themselves beside the engineered features. Raw
prices drift and differ by orders of magnitude between symbols, so each bar
is expressed relative to the previous close (log ratios), and its volume
relative to its own recent level: the same bar shape gives the same numbers
on any symbol at any price. Each value at bar t uses bars t - 19 .. t only.
"""

import numpy as np
import pandas as pd

RAW_VOLUME_WINDOW = 20
# The volume's trailing mean needs 20 bars (first value at row 19); the price
# ratios need only the previous close (row 1).
RAW_OHLCV_WARMUP = RAW_VOLUME_WINDOW


def raw_ohlcv_features(bars, references=None):
    """Computes the stationary raw-bar features of one symbol's bars.

    Features:

    - `log_open_to_previous_close`, `log_high_to_previous_close`,
      `log_low_to_previous_close`, `log_close_to_previous_close`: the log of
      each price of bar t divided by the close of bar t - 1.
    - `log_volume_to_mean_20`: log(1 + volume) minus its mean over the last
      20 bars (this one included); 0 for a constant volume.

    Args:
        bars: one symbol's canonical OHLCV frame (see `Panel`).
        references: unused; accepted so that the function fits the
            `FeatureSet.compute(bars, references)` signature. Defaults to
            `None`.

    Returns:
        A float64 frame of 5 columns on `bars.index`; the first
        `RAW_OHLCV_WARMUP - 1` rows hold NaN in `log_volume_to_mean_20`
        (warm-up), every later row is finite.
    """
    log_previous_close = np.log(bars["close"]).shift(1)
    log_volume = np.log1p(bars["volume"])
    return pd.DataFrame(
        {
            "log_open_to_previous_close": np.log(bars["open"]) - log_previous_close,
            "log_high_to_previous_close": np.log(bars["high"]) - log_previous_close,
            "log_low_to_previous_close": np.log(bars["low"]) - log_previous_close,
            "log_close_to_previous_close": np.log(bars["close"]) - log_previous_close,
            "log_volume_to_mean_20": log_volume - log_volume.rolling(RAW_VOLUME_WINDOW).mean(),
        },
        index=bars.index,
        dtype="float64",
    )
