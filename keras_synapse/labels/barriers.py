"""Triple-barrier labels and meta-labels (Lopez de Prado): which barrier a position touches first, and
whether a primary signal's trade paid, each ending at the bar of the touch.
"""

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError
from keras_synapse.labels.common import (
    SIDES,
    VERTICAL_LABELS,
    check_common,
    forward_log_return,
    forward_matrix,
    log_close_of,
    make_label,
    require_choice,
    require_number,
    require_window,
    trailing_volatility_of,
)


def _check_barrier_options(pt_multiple, sl_multiple):
    require_number("pt_multiple", pt_multiple, "> 0 (inf disables it)", lambda value: value > 0)
    require_number("sl_multiple", sl_multiple, "> 0 (inf disables it)", lambda value: value > 0)


def _barrier_outcome(bars, horizon, side, pt_multiple, sl_multiple):
    """Runs a trade entered at close[t] in direction `side` (+1 long, -1 short).

    Barriers, as log returns from close[t] in the trade's favour: profit-take
    at `+pt_multiple * w_t`, stop-loss at `-sl_multiple * w_t`, with
    `w_t = sigma_t * sqrt(horizon)`; vertical barrier at bar t + horizon.
    A barrier is touched at bar t+k (k = 1 .. horizon) when that bar's high
    or low reaches it. Bars give no order within a bar: when one bar touches
    both barriers the stop-loss counts (the conservative reading).

    Returns:
        `(outcome, exit_offset, vertical_return)` arrays: outcome +1
        profit-take, -1 stop-loss, 0 vertical barrier, NaN unknown (warm-up,
        no side, or no touch before the data ends short of t + horizon);
        `exit_offset` the k of the exit (0 where unknown); `vertical_return`
        the side-signed log return at t + horizon.
    """
    log_close = log_close_of(bars)
    close = log_close.to_numpy()
    log_high = np.log(bars["high"].astype("float64"))
    log_low = np.log(bars["low"].astype("float64"))
    volatility = trailing_volatility_of(log_close).to_numpy()
    width = np.where(volatility > 0, volatility, np.nan) * np.sqrt(horizon)
    side = np.asarray(side, dtype=np.float64)
    long = side > 0
    # In price terms: a long trade's profit-take is above, a short trade's below.
    upper_width = np.where(long, pt_multiple, sl_multiple) * width
    lower_width = np.where(long, sl_multiple, pt_multiple) * width
    highs = forward_matrix(log_high, horizon) - close[:, None]
    lows = forward_matrix(log_low, horizon) - close[:, None]
    num_rows = len(bars)
    exit_offset = np.zeros(num_rows, dtype=np.int64)
    outcome = np.full(num_rows, np.nan)
    # A loop over the `horizon` offsets, each vectorized over all rows.
    for offset in range(1, horizon + 1):
        upper_touch = highs[:, offset - 1] >= upper_width
        lower_touch = lows[:, offset - 1] <= -lower_width
        stop_touch = np.where(long, lower_touch, upper_touch)
        profit_touch = np.where(long, upper_touch, lower_touch)
        first = (exit_offset == 0) & (stop_touch | profit_touch)
        outcome[first] = np.where(stop_touch[first], -1.0, 1.0)
        exit_offset[first] = offset
    vertical_return = side * (forward_log_return(log_close, horizon).to_numpy())
    reached_vertical = (exit_offset == 0) & ~np.isnan(vertical_return)
    outcome[reached_vertical] = 0.0
    exit_offset[reached_vertical] = horizon
    unknown = np.isnan(width) | np.isnan(side) | (side == 0)
    outcome[unknown] = np.nan
    exit_offset[unknown | np.isnan(outcome)] = 0
    return outcome, exit_offset, vertical_return


def _exit_end_time(bars, exit_offset):
    positions = np.arange(len(bars)) + exit_offset
    end_time = pd.Series(bars.index[np.minimum(positions, len(bars) - 1)], index=bars.index)
    return end_time.where(exit_offset > 0)


def triple_barrier_label(
    bars,
    horizon=5,
    scaling="volatility",
    pt_multiple=1.0,
    sl_multiple=1.0,
    vertical_label="flat",
):
    """Triple-barrier label (Lopez de Prado, AFML ch. 3) of a long entry at close[t].

    Barriers, as log returns from close[t]: the profit-take at
    `+pt_multiple * sigma_t * sqrt(horizon)`, the stop-loss at
    `-sl_multiple * sigma_t * sqrt(horizon)` (`sigma_t` the trailing
    `VOLATILITY_WINDOW`-bar std of daily log returns, known at t; the
    `sqrt(horizon)` makes a multiple mean the same at any horizon), and the
    vertical barrier at bar t + horizon. The first barrier touched decides: a
    bar's high at or above the profit-take, or its low at or below the
    stop-loss. When one bar touches both, its OHLC cannot tell which came
    first; the stop-loss counts (conservative).

    Encoding (class indices): with `vertical_label="flat"`, STOP_LOSS=0,
    VERTICAL=1, PROFIT_TAKE=2, i.e. AFML's -1 / 0 / +1 plus one; with
    `vertical_label="sign"`, a binary DOWN=0 / UP=1 where the vertical
    barrier takes the sign of the return at t + horizon (NaN when exactly 0).

    End time: the bar of the first touch, t+1 .. t+horizon, not always
    t + horizon; purging must use it. A row whose data ends before both a
    touch and t + horizon is NaN.

    Args:
        bars: one symbol's canonical OHLCV frame.
        horizon: bars to the vertical barrier. Defaults to `5`.
        scaling: accepted for the registry's common signature; no effect on a
            class label (barriers are always volatility multiples). Defaults
            to `"volatility"`.
        pt_multiple: the profit-take distance in units of
            `sigma_t * sqrt(horizon)`, > 0 (`float("inf")` disables it).
            Defaults to `1.0`.
        sl_multiple: the stop-loss distance, likewise. Defaults to `1.0`.
        vertical_label: `"flat"` or `"sign"`. Defaults to `"flat"`.

    Returns:
        A `Label`: multiclass `("STOP_LOSS", "VERTICAL", "PROFIT_TAKE")` or
        binary `("DOWN", "UP")`.

    Raises:
        ConfigError: for a bad horizon, scaling or option value.
    """
    check_common(horizon, scaling)
    _check_barrier_options(pt_multiple, sl_multiple)
    require_choice("vertical_label", vertical_label, VERTICAL_LABELS)
    outcome, exit_offset, vertical_return = _barrier_outcome(
        bars, horizon, np.ones(len(bars)), pt_multiple, sl_multiple
    )
    if vertical_label == "flat":
        values, kind, classes = outcome + 1.0, "multiclass", ("STOP_LOSS", "VERTICAL", "PROFIT_TAKE")
    else:
        values = np.where(outcome > 0, 1.0, 0.0)
        at_vertical = outcome == 0
        values[at_vertical] = np.where(vertical_return[at_vertical] > 0, 1.0, 0.0)
        values[at_vertical & (vertical_return == 0)] = np.nan
        values[np.isnan(outcome)] = np.nan
        kind, classes = "binary", ("DOWN", "UP")
    forward_return = forward_log_return(log_close_of(bars), horizon)
    return make_label(bars, values, _exit_end_time(bars, exit_offset), forward_return, kind, classes)


def _check_rsi_options(rsi_window, rsi_oversold, rsi_overbought):
    require_window("rsi_window", rsi_window)
    require_number("rsi_oversold", rsi_oversold, "in [0, 100]", lambda value: 0 <= value <= 100)
    require_number(
        "rsi_overbought",
        rsi_overbought,
        f"in [rsi_oversold ({rsi_oversold}), 100]",
        lambda value: rsi_oversold <= value <= 100,
    )


def momentum_side(bars, momentum_window=20):
    """A primary side: the sign of the `momentum_window`-bar log return (+1, -1, 0), known at t."""
    require_window("momentum_window", momentum_window)
    return np.sign(log_close_of(bars).diff(momentum_window))


def rsi_side(bars, rsi_window=14, rsi_oversold=30.0, rsi_overbought=70.0):
    """A primary side: RSI mean reversion, +1 below `rsi_oversold`, -1 above `rsi_overbought`, else 0.

    Wilder's RSI over `rsi_window` bars of closes up to t (NaN during its
    warm-up).
    """
    _check_rsi_options(rsi_window, rsi_oversold, rsi_overbought)
    change = bars["close"].astype("float64").diff()
    average_gain = change.clip(lower=0).ewm(alpha=1 / rsi_window, adjust=False, min_periods=rsi_window).mean()
    average_loss = (-change).clip(lower=0).ewm(alpha=1 / rsi_window, adjust=False, min_periods=rsi_window).mean()
    # Only gains in the window: RSI is 100 (relative strength is infinite).
    rsi = (100 - 100 / (1 + average_gain / average_loss.where(average_loss > 0))).where(average_loss > 0, 100.0)
    rsi = rsi.where(average_gain.notna())
    side = pd.Series(np.where(rsi < rsi_oversold, 1.0, np.where(rsi > rsi_overbought, -1.0, 0.0)), index=bars.index)
    return side.where(rsi.notna())


def meta_label(
    bars,
    horizon=5,
    scaling="volatility",
    side="momentum",
    pt_multiple=1.0,
    sl_multiple=1.0,
    momentum_window=20,
    rsi_window=14,
    rsi_oversold=30.0,
    rsi_overbought=70.0,
):
    """Meta-label (AFML ch. 3.6): was the primary signal's trade worth taking?

    A primary model gives a side at t (+1 long, -1 short, 0 no trade), known
    at t. The trade entered at close[t] in that direction runs the triple
    barrier of `triple_barrier_label`, mirrored for shorts (profit-take below,
    stop-loss above close[t]). Meta-label 1 when the profit-take is touched
    first, or the vertical barrier is reached with a positive return in the
    trade's direction; 0 otherwise (stop-loss first, including a bar that
    touches both, or a return <= 0 at the vertical barrier). NaN where the
    side is 0 or unknown. A model trained on it learns when to trust the
    primary signal (seed 004's filter); the side itself is not its target.

    Primary sides (`side`): `"momentum"`, the sign of the
    `momentum_window`-bar log return (`momentum_side`); `"rsi"`, RSI mean
    reversion (`rsi_side`); or a callable `side(bars) -> pandas.Series` of
    +1 / -1 / 0 on `bars.index` that must use bars up to t only.

    End time: the bar of the first touch, as for `triple_barrier_label`.

    Args:
        bars: one symbol's canonical OHLCV frame.
        horizon: bars to the vertical barrier. Defaults to `5`.
        scaling: accepted for the registry's common signature; no effect on a
            class label. Defaults to `"volatility"`.
        side: `"momentum"`, `"rsi"` or a callable. Defaults to `"momentum"`.
        pt_multiple: the profit-take distance in units of
            `sigma_t * sqrt(horizon)`, > 0. Defaults to `1.0`.
        sl_multiple: the stop-loss distance, likewise. Defaults to `1.0`.
        momentum_window: bars of the `"momentum"` side. Defaults to `20`.
        rsi_window: bars of the `"rsi"` side's RSI. Defaults to `14`.
        rsi_oversold: RSI below which `"rsi"` goes long. Defaults to `30.0`.
        rsi_overbought: RSI above which `"rsi"` goes short. Defaults to
            `70.0`.

    Returns:
        A binary `Label` with classes `("UNPROFITABLE", "PROFITABLE")`.

    Raises:
        ConfigError: for a bad horizon, scaling, side or option value, or a
            callable side that returns values other than -1, 0, 1.
    """
    check_common(horizon, scaling)
    _check_barrier_options(pt_multiple, sl_multiple)
    # Checked whichever side is used, so a typo fails even where it is unused.
    require_window("momentum_window", momentum_window)
    _check_rsi_options(rsi_window, rsi_oversold, rsi_overbought)
    if callable(side):
        result = side(bars)
        if isinstance(result, pd.Series):
            sides = result.astype("float64").reindex(bars.index)
        else:
            sides = pd.Series(np.asarray(result, dtype=np.float64), index=bars.index)
        bad = sides.notna() & ~sides.isin([-1.0, 0.0, 1.0])
        if bad.any():
            raise ConfigError(
                f"A callable `side` must return -1, 0 or 1. Received: {float(sides[bad].iloc[0])} at "
                f"{sides.index[bad][0]}"
            )
    elif side == "momentum":
        sides = momentum_side(bars, momentum_window)
    elif side == "rsi":
        sides = rsi_side(bars, rsi_window, rsi_oversold, rsi_overbought)
    else:
        raise ConfigError(f"`side` must be one of {SIDES} or a callable. Received: side={side!r}")
    outcome, exit_offset, vertical_return = _barrier_outcome(
        bars, horizon, sides.to_numpy(), pt_multiple, sl_multiple
    )
    values = np.where((outcome > 0) | ((outcome == 0) & (vertical_return > 0)), 1.0, 0.0)
    values[np.isnan(outcome)] = np.nan
    forward_return = forward_log_return(log_close_of(bars), horizon)
    return make_label(
        bars, values, _exit_end_time(bars, exit_offset), forward_return, "binary", ("UNPROFITABLE", "PROFITABLE")
    )
