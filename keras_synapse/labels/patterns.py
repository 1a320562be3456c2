"""Seed 004's pattern-validation labels: did a detected pattern persist, shift, reverse or resolve?

Each pattern is detected against a threshold from the signal's own past (an expanding quantile), never the whole series.
"""

import numpy as np

from keras_synapse.labels.common import (
    check_common,
    check_pattern_options,
    forward_log_return,
    forward_matrix,
    horizon_end_time,
    log_close_of,
    make_label,
    past_quantile,
    require,
    require_number,
    require_window,
)


def _pattern_label(bars, horizon, signal, threshold, detected, validated, no_pattern, classes):
    """Assembles a pattern target.

    `detected` and `validated` are boolean arrays; rows where `signal` or
    `threshold` is NaN (warm-up) are unknown in both `no_pattern` modes, since
    whether a pattern fired is not known there either.
    """
    forward_return = forward_log_return(log_close_of(bars), horizon)
    values = np.where(validated, 1.0, 0.0)
    values[~detected] = 0.0 if no_pattern == "zero" else np.nan
    values[np.isnan(signal.to_numpy()) | np.isnan(threshold.to_numpy())] = np.nan
    # Every row uses bars up to t + horizon (a missed detection too, so that
    # purging treats all rows of this label alike).
    values[forward_return.isna().to_numpy()] = np.nan
    return make_label(bars, values, horizon_end_time(bars, horizon), forward_return, "binary", classes)


def momentum_persistence_label(
    bars,
    horizon=5,
    scaling="volatility",
    momentum_window=7,
    persistence=0.6,
    quantile=0.7,
    min_history=252,
    no_pattern="nan",
):
    """Seed 004's "momentum persistence": does strong momentum keep its direction?

    Signal: the `momentum_window`-bar log return `m_t = log(close[t] /
    close[t - momentum_window])`. The pattern fires at t when `|m_t|` exceeds
    the `quantile` of `|m|` over bars up to t (at least `min_history` values),
    so strong moves up and down both count. Validation: of the nonzero daily
    log returns of bars t+1 .. t+horizon, the share with the sign of `m_t` is
    greater than `persistence` -> 1, else 0 (0 also when all are zero).
    Seed 004 counted the majority sign whichever it was; here the direction
    must be the momentum's own. End time: bar t + horizon.

    Args:
        bars: one symbol's canonical OHLCV frame.
        horizon: bars ahead. Defaults to `5`.
        scaling: accepted for the registry's common signature; no effect on a
            class label. Defaults to `"volatility"`.
        momentum_window: bars of the momentum. Defaults to `7`.
        persistence: the share of forward returns that must keep the sign, in
            [0, 1). Defaults to `0.6`.
        quantile: the detection percentile of the past signal, in (0, 1).
            Defaults to `0.7`.
        min_history: signal values needed before any detection. Defaults to
            `252`.
        no_pattern: the label where no pattern fires: `"nan"` (the window is
            dropped, so the target means "given the pattern, did it hold?", as
            in seed 004, which only set the target when the pattern fired) or
            `"zero"` (every window is trained on; the target then also encodes
            whether the pattern fired, which the model can read from its
            inputs). Defaults to `"nan"`.

    Returns:
        A binary `Label` with classes `("faded", "persisted")`.

    Raises:
        ConfigError: for a bad horizon, scaling or option value.
    """
    check_common(horizon, scaling)
    require_window("momentum_window", momentum_window)
    require_number("persistence", persistence, "in [0, 1)", lambda value: 0 <= value < 1)
    check_pattern_options(quantile, min_history, no_pattern)
    log_close = log_close_of(bars)
    momentum = log_close.diff(momentum_window)
    strength = momentum.abs()
    threshold = past_quantile(strength, quantile, min_history)
    detected = (strength > threshold).to_numpy()
    forward_signs = np.sign(forward_matrix(log_close.diff(), horizon))
    num_nonzero = (forward_signs != 0).sum(axis=1)
    num_agreeing = ((forward_signs == np.sign(momentum.to_numpy())[:, None]) & (forward_signs != 0)).sum(axis=1)
    share = np.divide(num_agreeing, num_nonzero, out=np.zeros(len(bars)), where=num_nonzero > 0)
    validated = share > persistence
    return _pattern_label(
        bars, horizon, strength, threshold, detected, validated, no_pattern, ("faded", "persisted")
    )


def volatility_regime_shift_label(
    bars,
    horizon=5,
    scaling="volatility",
    short_window=10,
    long_window=60,
    quantile=0.7,
    min_history=252,
    no_pattern="nan",
):
    """Seed 004's "volatility regime shift": does a jump in volatility persist?

    Realized volatility over n bars is the root mean square of daily log
    returns. Signal: the ratio of the `short_window`-bar to the
    `long_window`-bar realized volatility at t. The pattern (a shift to a
    more volatile regime) fires when the ratio exceeds its `quantile` over
    bars up to t. Validation: the realized volatility of bars t+1 ..
    t+horizon stays above the `long_window`-bar volatility at t (the old
    regime's level) -> 1, else 0. End time: bar t + horizon.

    Args:
        bars: one symbol's canonical OHLCV frame.
        horizon: bars ahead. Defaults to `5`.
        scaling: accepted for the registry's common signature; no effect on a
            class label. Defaults to `"volatility"`.
        short_window: bars of the recent volatility. Defaults to `10`.
        long_window: bars of the baseline volatility, > `short_window`.
            Defaults to `60`.
        quantile: the detection percentile of the past signal, in (0, 1).
            Defaults to `0.7`.
        min_history: signal values needed before any detection. Defaults to
            `252`.
        no_pattern: `"nan"` or `"zero"`, see `momentum_persistence_label`.
            Defaults to `"nan"`.

    Returns:
        A binary `Label` with classes `("subsided", "persisted")`.

    Raises:
        ConfigError: for a bad horizon, scaling or option value.
    """
    check_common(horizon, scaling)
    require_window("short_window", short_window)
    require_window("long_window", long_window)
    require(long_window > short_window, "long_window", long_window, f"> short_window ({short_window})")
    check_pattern_options(quantile, min_history, no_pattern)
    squared_returns = log_close_of(bars).diff() ** 2
    short_volatility = np.sqrt(squared_returns.rolling(short_window).mean())
    long_volatility = np.sqrt(squared_returns.rolling(long_window).mean())
    ratio = short_volatility / long_volatility.where(long_volatility > 0)
    threshold = past_quantile(ratio, quantile, min_history)
    detected = (ratio > threshold).to_numpy()
    forward_volatility = np.sqrt(np.mean(forward_matrix(squared_returns, horizon), axis=1))
    validated = forward_volatility > long_volatility.to_numpy()
    return _pattern_label(
        bars, horizon, ratio, threshold, detected, validated, no_pattern, ("subsided", "persisted")
    )


def trend_exhaustion_label(
    bars,
    horizon=5,
    scaling="volatility",
    trend_window=20,
    quantile=0.7,
    min_history=252,
    no_pattern="nan",
):
    """Seed 004's "trend exhaustion": does an extended trend reverse?

    Signal: the trend's strength in units of its own noise,
    `e_t = log(close[t] / close[t - trend_window]) / (sigma_t *
    sqrt(trend_window))`, with `sigma_t` the std of the last `trend_window`
    daily log returns. The pattern (an extended trend, up or down) fires when
    `|e_t|` exceeds its `quantile` over bars up to t. Validation: the forward
    log return over bars t+1 .. t+horizon has the opposite sign of `e_t`
    (the trend reversed) -> 1, else 0. End time: bar t + horizon.

    Args:
        bars: one symbol's canonical OHLCV frame.
        horizon: bars ahead. Defaults to `5`.
        scaling: accepted for the registry's common signature; no effect on a
            class label. Defaults to `"volatility"`.
        trend_window: bars of the trend, >= 2. Defaults to `20`.
        quantile: the detection percentile of the past signal, in (0, 1).
            Defaults to `0.7`.
        min_history: signal values needed before any detection. Defaults to
            `252`.
        no_pattern: `"nan"` or `"zero"`, see `momentum_persistence_label`.
            Defaults to `"nan"`.

    Returns:
        A binary `Label` with classes `("continued", "reversed")`.

    Raises:
        ConfigError: for a bad horizon, scaling or option value.
    """
    check_common(horizon, scaling)
    require_window("trend_window", trend_window)
    require(trend_window >= 2, "trend_window", trend_window, ">= 2")
    check_pattern_options(quantile, min_history, no_pattern)
    log_close = log_close_of(bars)
    volatility = log_close.diff().rolling(trend_window).std()
    extension = log_close.diff(trend_window) / (volatility.where(volatility > 0) * np.sqrt(trend_window))
    strength = extension.abs()
    threshold = past_quantile(strength, quantile, min_history)
    detected = (strength > threshold).to_numpy()
    forward = forward_log_return(log_close, horizon).to_numpy()
    validated = np.sign(forward) == -np.sign(extension.to_numpy())
    validated &= forward != 0
    return _pattern_label(
        bars, horizon, strength, threshold, detected, validated, no_pattern, ("continued", "reversed")
    )


def volume_divergence_label(
    bars,
    horizon=5,
    scaling="volatility",
    divergence_window=10,
    quantile=0.7,
    min_history=252,
    no_pattern="nan",
):
    """Seed 004's "volume divergence": does price follow where volume pointed?

    Over the last `divergence_window` bars: the price move
    `p_t = log(close[t] / close[t - divergence_window])` and the volume flow
    `v_t = sum(sign(r_i) * volume_i) / sum(volume_i)` in [-1, 1] (on-balance
    volume's change as a share of the volume traded; `r_i` the daily log
    return). They diverge when the volume traded on up days and on down days
    points against the price move (accumulation while the price falls,
    distribution while it rises). Signal: `d_t = -sign(p_t) * v_t`. The
    pattern fires when `d_t > 0` and `d_t` exceeds its `quantile` over bars up
    to t. Validation: the forward log return over bars t+1 .. t+horizon has
    the sign of `v_t` (the divergence resolved the way volume suggested) -> 1,
    else 0. End time: bar t + horizon.

    Args:
        bars: one symbol's canonical OHLCV frame.
        horizon: bars ahead. Defaults to `5`.
        scaling: accepted for the registry's common signature; no effect on a
            class label. Defaults to `"volatility"`.
        divergence_window: bars of the price move and volume flow. Defaults
            to `10`.
        quantile: the detection percentile of the past signal, in (0, 1).
            Defaults to `0.7`.
        min_history: signal values needed before any detection. Defaults to
            `252`.
        no_pattern: `"nan"` or `"zero"`, see `momentum_persistence_label`.
            Defaults to `"nan"`.

    Returns:
        A binary `Label` with classes `("unresolved", "resolved")`.

    Raises:
        ConfigError: for a bad horizon, scaling or option value.
    """
    check_common(horizon, scaling)
    require_window("divergence_window", divergence_window)
    check_pattern_options(quantile, min_history, no_pattern)
    log_close = log_close_of(bars)
    volume = bars["volume"].astype("float64")
    signed_volume = (np.sign(log_close.diff()) * volume).rolling(divergence_window).sum()
    total_volume = volume.rolling(divergence_window).sum()
    flow = signed_volume / total_volume.where(total_volume > 0)
    divergence = -np.sign(log_close.diff(divergence_window)) * flow
    threshold = past_quantile(divergence, quantile, min_history)
    detected = ((divergence > 0) & (divergence > threshold)).to_numpy()
    forward = forward_log_return(log_close, horizon).to_numpy()
    validated = (np.sign(forward) == np.sign(flow.to_numpy())) & (forward != 0)
    return _pattern_label(
        bars, horizon, divergence, threshold, detected, validated, no_pattern, ("unresolved", "resolved")
    )
