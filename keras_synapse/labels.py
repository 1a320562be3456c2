"""Labels: targets with the time at which each becomes known.

A label at bar t looks forward (bars t+1 .. t+horizon), so it is known only at
its end time. Validation purges on that end time, which is why every label
returns it.
"""

import dataclasses

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError

LABELS = ("forward_return",)
LABEL_SCALINGS = ("none", "volatility")
VOLATILITY_WINDOW = 20


@dataclasses.dataclass(frozen=True)
class Label:
    """One symbol's label.

    Attributes:
        values: the training target at each bar (NaN where unknown).
        end_time: the timestamp of the last bar the target depends on (NaT
            where the target is unknown).
        forward_return: the raw forward log return over the horizon, kept for
            evaluation and the backtest whatever the target's scaling.
    """

    values: pd.Series
    end_time: pd.Series
    forward_return: pd.Series


def forward_return_label(bars, horizon=5, scaling="volatility"):
    """The forward log return `log(close[t + horizon] / close[t])`.

    With `scaling="volatility"` the target is divided by the trailing
    `VOLATILITY_WINDOW`-bar volatility of daily log returns times
    `sqrt(horizon)` (both known at t), so symbols of different volatility
    share one scale and no single volatile name dominates the loss.

    Args:
        bars: one symbol's canonical OHLCV frame.
        horizon: bars ahead. Defaults to `5`.
        scaling: `"none"` or `"volatility"`. Defaults to `"volatility"`.

    Returns:
        A `Label`.
    """
    if horizon < 1:
        raise ConfigError(f"`horizon` must be >= 1. Received: horizon={horizon}")
    if scaling not in LABEL_SCALINGS:
        raise ConfigError(f"`label_scaling` must be one of {LABEL_SCALINGS}. Received: label_scaling={scaling!r}")
    log_close = np.log(bars["close"])
    forward_return = log_close.shift(-horizon) - log_close
    end_time = pd.Series(bars.index, index=bars.index).shift(-horizon)
    values = forward_return
    if scaling == "volatility":
        trailing_volatility = log_close.diff().rolling(VOLATILITY_WINDOW).std()
        values = forward_return / (trailing_volatility.where(trailing_volatility > 0) * np.sqrt(horizon))
    return Label(values=values, end_time=end_time, forward_return=forward_return)


def compute_labels(panel, name="forward_return", horizon=5, scaling="volatility"):
    """Computes label `name` for every symbol of `panel`.

    Returns:
        A dict symbol -> `Label`.

    Raises:
        ConfigError: for an unknown label name.
    """
    if name not in LABELS:
        raise ConfigError(f"Unknown label {name!r}. Known: {', '.join(LABELS)}")
    return {symbol: forward_return_label(bars, horizon, scaling) for symbol, bars in panel.items()}
