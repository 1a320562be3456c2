"""Labels of the forward return: its value, its volatility, and its direction (three classes or two)."""

import dataclasses
import numbers

import numpy as np
import pandas as pd

from keras_synapse.labels.common import (
    DEFAULT_FLAT_MULTIPLE,
    FLAT_BANDS,
    ZERO_RETURN_CHOICES,
    check_common,
    entry_return,
    forward_log_return,
    forward_matrix,
    horizon_end_time,
    log_close_of,
    make_label,
    require,
    require_choice,
    require_number,
    trailing_volatility_of,
)


def forward_return_label(bars, horizon=5, scaling="volatility", execution_lag=0):
    """The forward log return `log(close[t + horizon] / close[t])`, or that of a trade entered later.

    With `scaling="volatility"` the target is divided by the trailing
    `VOLATILITY_WINDOW`-bar volatility of daily log returns times
    `sqrt(horizon)` (both known at t), so symbols of different volatility
    share one scale and no single volatile name dominates the loss. The end
    time is bar t + horizon. Horizons 1, 3 and 5 are the seed's multi-horizon
    set; any horizon >= 1 works.

    Args:
        bars: one symbol's canonical OHLCV frame.
        horizon: bars ahead. Defaults to `5`.
        scaling: `"none"` or `"volatility"`. Defaults to `"volatility"`.
        execution_lag: bars from the signal to the trade: the target is then
            the open-to-open return from bar t + lag (`entry_return`), still
            scaled by the volatility known at t. Defaults to `0`.

    Returns:
        A regression `Label`.

    Raises:
        ConfigError: for a horizon < 1 or an unknown scaling.
    """
    check_common(horizon, scaling)
    require(isinstance(execution_lag, numbers.Integral) and execution_lag >= 0, "execution_lag", execution_lag,
            "an integer >= 0")
    log_close = log_close_of(bars)
    forward_return = entry_return(bars, horizon, execution_lag)
    values = forward_return
    if scaling == "volatility":
        trailing_volatility = trailing_volatility_of(log_close)
        values = forward_return / (trailing_volatility.where(trailing_volatility > 0) * np.sqrt(horizon))
    label = make_label(bars, values, horizon_end_time(bars, horizon + execution_lag), forward_return, "regression",
                       ())
    return dataclasses.replace(label, execution_lag=int(execution_lag))


def forward_volatility_label(bars, horizon=5, scaling="volatility"):
    """Realized volatility over the next `horizon` bars (seed 004's volatility head).

    The target is the root mean square of the log returns of bars t+1 ..
    t+horizon; with `scaling="volatility"` it is divided by the trailing
    `VOLATILITY_WINDOW`-bar volatility known at t, so 1 means "as volatile as
    lately". Non-negative; the end time is bar t + horizon.

    Args:
        bars: one symbol's canonical OHLCV frame.
        horizon: bars ahead. Defaults to `5`.
        scaling: `"none"` or `"volatility"`. Defaults to `"volatility"`.

    Returns:
        A regression `Label`.
    """
    check_common(horizon, scaling)
    log_close = log_close_of(bars)
    squared = forward_matrix(log_close.diff() ** 2, horizon)
    values = pd.Series(np.sqrt(squared.mean(axis=1)), index=bars.index)
    if scaling == "volatility":
        trailing_volatility = trailing_volatility_of(log_close)
        values = values / trailing_volatility.where(trailing_volatility > 0)
    forward_return = forward_log_return(log_close, horizon)
    return make_label(bars, values, horizon_end_time(bars, horizon), forward_return, "regression", ())


def direction_label(
    bars,
    horizon=5,
    scaling="volatility",
    flat_band="volatility",
    flat_multiple=DEFAULT_FLAT_MULTIPLE,
    flat_return=0.005,
):
    """UP / DOWN / FLAT over the horizon: DOWN=0, FLAT=1, UP=2 (seed 001's codes).

    With `f = log(close[t + horizon] / close[t])`, the label is FLAT when
    `|f| < band` (or `f == 0`), else UP when `f > 0` and DOWN when `f < 0`.
    The band is either `flat_multiple * sigma_t * sqrt(horizon)`, with `sigma_t`
    the trailing `VOLATILITY_WINDOW`-bar std of daily log returns known at t
    (`flat_band="volatility"`), so FLAT keeps the same share in calm and
    turbulent markets, or the fixed log return `flat_return`
    (`flat_band="fixed"`). The default multiple gives 31% FLAT (33% DOWN,
    36% UP) on the offline sample at horizon 5, where a fixed band of 0.5%
    gives 12% (seed 001's fixed band gave a 7% FLAT sliver that its model
    never predicted). The end time is bar t + horizon.

    Args:
        bars: one symbol's canonical OHLCV frame.
        horizon: bars ahead. Defaults to `5`.
        scaling: accepted for the registry's common signature; a class label
            has no scale, so it has no effect (see `flat_band`). Defaults to
            `"volatility"`.
        flat_band: `"volatility"` or `"fixed"`. Defaults to `"volatility"`.
        flat_multiple: the band in units of `sigma_t * sqrt(horizon)`, >= 0.
            Defaults to `0.4`.
        flat_return: the fixed band as an absolute log return, >= 0. Defaults
            to `0.005`.

    Returns:
        A multiclass `Label` with classes `("DOWN", "FLAT", "UP")`; NaN during
        the volatility warm-up and where t + horizon is past the last bar.

    Raises:
        ConfigError: for a bad horizon, scaling, band or negative threshold.
    """
    check_common(horizon, scaling)
    require_choice("flat_band", flat_band, FLAT_BANDS)
    require_number("flat_multiple", flat_multiple, ">= 0", lambda value: value >= 0)
    require_number("flat_return", flat_return, ">= 0", lambda value: value >= 0)
    log_close = log_close_of(bars)
    forward_return = forward_log_return(log_close, horizon)
    if flat_band == "volatility":
        band = (flat_multiple * trailing_volatility_of(log_close) * np.sqrt(horizon)).to_numpy()
    else:
        band = np.full(len(bars), float(flat_return))
    forward = forward_return.to_numpy()
    values = np.where(forward > 0, 2.0, 0.0)
    values = np.where((np.abs(forward) < band) | (forward == 0), 1.0, values)
    values[np.isnan(forward) | np.isnan(band)] = np.nan
    return make_label(
        bars, values, horizon_end_time(bars, horizon), forward_return, "multiclass", ("DOWN", "FLAT", "UP")
    )


def direction_binary_label(bars, horizon=5, scaling="volatility", zero_return="nan"):
    """UP=1 when the forward log return over the horizon is > 0, DOWN=0 when < 0.

    A forward return of exactly zero has no direction: by default its label is
    NaN (the window is dropped from training); `zero_return="down"` counts it
    as DOWN, i.e. "did it go up?". The end time is bar t + horizon.

    Args:
        bars: one symbol's canonical OHLCV frame.
        horizon: bars ahead. Defaults to `5`.
        scaling: accepted for the registry's common signature; no effect on a
            class label. Defaults to `"volatility"`.
        zero_return: `"nan"` or `"down"`. Defaults to `"nan"`.

    Returns:
        A binary `Label` with classes `("DOWN", "UP")`.

    Raises:
        ConfigError: for a bad horizon, scaling or `zero_return`.
    """
    check_common(horizon, scaling)
    require_choice("zero_return", zero_return, ZERO_RETURN_CHOICES)
    forward_return = forward_log_return(log_close_of(bars), horizon)
    forward = forward_return.to_numpy()
    values = np.where(forward > 0, 1.0, 0.0)
    values[np.isnan(forward)] = np.nan
    if zero_return == "nan":
        values[forward == 0] = np.nan
    return make_label(bars, values, horizon_end_time(bars, horizon), forward_return, "binary", ("DOWN", "UP"))
