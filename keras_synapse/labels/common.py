"""What every label shares: the `Label` record with its end times, option checks, and past-only thresholds."""

import dataclasses
import numbers

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError

LABEL_SCALINGS = ("none", "volatility")


LABEL_KINDS = ("regression", "binary", "multiclass")


FLAT_BANDS = ("volatility", "fixed")


ZERO_RETURN_CHOICES = ("nan", "down")


NO_PATTERN_CHOICES = ("nan", "zero")


VERTICAL_LABELS = ("flat", "sign")


SIDES = ("momentum", "rsi")


VOLATILITY_WINDOW = 20


# Chosen on the offline sample (`load_sample()`, 12 symbols 1999-2018, horizon
# 5): DOWN 32.9%, FLAT 31.2%, UP 35.9% (FLAT 29-33% on every symbol; checked in
# tests/labels/test_labels.py), instead of the 7% FLAT sliver of seed 001's fixed band
# that its classifier never predicted.
DEFAULT_FLAT_MULTIPLE = 0.4


# Labels whose prediction is a view on the forward return's sign (UP vs DOWN);
# the others ask whether a detected event resolves as expected, so their
# predictions are scored against the event's outcome, not the return.
DIRECTIONAL_LABELS = ("forward_return", "direction", "direction_binary", "triple_barrier")


@dataclasses.dataclass(frozen=True)
class Label:
    """One symbol's label.

    Attributes:
        values: the training target at each bar (NaN where unknown); class
            indices for class labels.
        end_time: the timestamp of the last bar the target depends on (NaT
            exactly where `values` is NaN).
        forward_return: the raw forward log return over the horizon,
            `log(close[t + horizon] / close[t])`, kept for evaluation and the
            backtest whatever the target; NaN where t + horizon is past the
            last bar.
        kind: `"regression"`, `"binary"` or `"multiclass"`.
        classes: for class labels, `classes[i]` names class index i; empty for
            regression.
        execution_lag: bars between the signal bar and the trade: the label
            at t is the one of bar t + lag, and `forward_return` runs from
            the open of bar t + lag to the open `horizon` bars later, see
            `with_execution_lag`. Defaults to `0`.
    """

    values: pd.Series
    end_time: pd.Series
    forward_return: pd.Series
    kind: str = "regression"
    classes: tuple = ()
    execution_lag: int = 0

    @property
    def num_classes(self):
        """The number of classes (0 for regression)."""
        return len(self.classes)


def with_execution_lag(label, lag, bars=None, horizon=None):
    """The label of a trade entered `lag` bars after the signal bar, at that bar's open.

    A signal computed from bar t's close can be traded at t's close only by
    an order placed before the close was known; with `lag` 1 the order fills
    at the open of bar t + 1 and is held `horizon` bars, to the open of bar
    t + 1 + horizon (so back-to-back positions hold through every night).
    The target and its end time at t are those computed at t + lag (the last
    `lag` bars have none), and the forward return the label is scored and
    traded on is `entry_return`. Purging then uses the later end time.

    Args:
        label: the `Label` of a trade at the signal bar's close.
        lag: bars from the signal to the trade, an integer >= 0.
        bars: the symbol's bars, for the open-to-open forward return.
            Defaults to `None`: the forward return is shifted like the
            target (close to close, from bar t + lag).
        horizon: the label horizon, with `bars`.
    """
    require(isinstance(lag, numbers.Integral) and lag >= 0, "execution_lag", lag, "an integer >= 0")
    if lag == 0:
        return label
    forward_return = label.forward_return.shift(-lag) if bars is None else entry_return(bars, horizon, lag)
    return dataclasses.replace(label, values=label.values.shift(-lag), end_time=label.end_time.shift(-lag),
                               forward_return=forward_return, execution_lag=int(lag))


def entry_return(bars, horizon, lag=0):
    """The log return of a position taken `lag` bars after the signal bar and held `horizon` bars.

    `lag` 0 trades at the signal bar's close: `log(close[t + horizon] /
    close[t])`. A later trade fills at the open of bar t + lag and exits at
    the open of bar t + lag + horizon. Closes-only bars (open = close on every
    bar) thereby trade at the closes, the nearest price they have.
    """
    if lag == 0:
        return forward_log_return(log_close_of(bars), horizon)
    return forward_log_return(np.log(bars["open"].astype("float64")), horizon).shift(-lag)


def require(condition, name, value, expectation):
    if not condition:
        raise ConfigError(f"`{name}` must be {expectation}. Received: {name}={value!r}")


def require_choice(name, value, choices):
    require(value in choices, name, value, f"one of {choices}")


def require_number(name, value, expectation, condition):
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    require(is_number and condition(value), name, value, expectation)


def require_window(name, value):
    is_integer = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    require(is_integer and value >= 1, name, value, "an integer >= 1")


def check_common(horizon, scaling):
    is_integer = isinstance(horizon, numbers.Integral) and not isinstance(horizon, bool)
    require(is_integer and horizon >= 1, "horizon", horizon, ">= 1")
    # `scaling` is the config's `label_scaling`; the message uses that name.
    require_choice("label_scaling", scaling, LABEL_SCALINGS)


def check_pattern_options(quantile, min_history, no_pattern):
    require_number("quantile", quantile, "in (0, 1)", lambda value: 0 < value < 1)
    require_window("min_history", min_history)
    require_choice("no_pattern", no_pattern, NO_PATTERN_CHOICES)


def log_close_of(bars):
    return np.log(bars["close"].astype("float64"))


def trailing_volatility_of(log_close):
    """Std of the last `VOLATILITY_WINDOW` daily log returns, bars up to t."""
    return log_close.diff().rolling(VOLATILITY_WINDOW).std()


def forward_log_return(log_close, horizon):
    return log_close.shift(-horizon) - log_close


def horizon_end_time(bars, horizon):
    return pd.Series(bars.index, index=bars.index).shift(-horizon)


def past_quantile(signal, quantile, min_history):
    """The `quantile` of `signal` over its history up to and including t.

    Uses only values known at t; `min_history` non-NaN values are required
    before a threshold exists (NaN before). The signal at t is known at t, so
    including it is no leak.
    """
    return signal.expanding(min_periods=min_history).quantile(quantile)


def forward_matrix(series, horizon):
    """`[rows, horizon]` array whose column k-1 holds `series` at t+k (NaN past the end)."""
    values = series.to_numpy(dtype=np.float64)
    num_rows = len(values)
    matrix = np.full((num_rows, horizon), np.nan)
    for offset in range(1, horizon + 1):
        if offset < num_rows:
            matrix[: num_rows - offset, offset - 1] = values[offset:]
    return matrix


def make_label(bars, values, end_time, forward_return, kind, classes):
    """Builds a `Label`, keeping `values` and `end_time` missing together."""
    values = pd.Series(np.asarray(values, dtype=np.float64), index=bars.index)
    end_time = pd.Series(end_time, index=bars.index)
    known = values.notna() & end_time.notna()
    return Label(
        values=values.where(known),
        end_time=end_time.where(known),
        forward_return=forward_return,
        kind=kind,
        classes=tuple(classes),
    )
