"""Labels: targets with the time at which each becomes known.

A label at bar t looks forward (bars t+1 .. t+horizon), so it is known only at
its end time. Validation purges on that end time, which is why every label
returns it. Most labels end at t+horizon; triple-barrier and meta-labels end at
the bar where the first barrier is touched, which may be earlier.

Every threshold a label uses is known at t: trailing volatility over the bars up
to t, and pattern-detection percentiles over the signal's own history up to t
(an expanding quantile), never over the whole series, which would let bars
after t move the threshold and so the label at t.

The registry `LABELS` maps a name to a function
`label(bars, horizon=5, scaling="volatility", **options) -> Label`:

| name | kind | values |
|---|---|---|
| `forward_return` | regression | h-bar forward log return, optionally / (sigma_t sqrt(h)) |
| `direction` | multiclass | DOWN=0, FLAT=1, UP=2 |
| `direction_binary` | binary | DOWN=0, UP=1 |
| `momentum_persistence` | binary | faded=0, persisted=1 |
| `volatility_regime_shift` | binary | subsided=0, persisted=1 |
| `trend_exhaustion` | binary | continued=0, reversed=1 |
| `volume_divergence` | binary | unresolved=0, resolved=1 |
| `triple_barrier` | multiclass | STOP_LOSS=0, VERTICAL=1, PROFIT_TAKE=2 (or binary DOWN=0, UP=1) |
| `meta_label` | binary | UNPROFITABLE=0, PROFITABLE=1 |

Class labels are class indices (0 .. num_classes - 1), ready for a sparse
categorical or binary cross-entropy; `Label.classes[i]` names index i.

Example:

>>> from keras_synapse.data.sample import load_sample
>>> labels = compute_labels(load_sample(quick=True), "triple_barrier", horizon=5)
>>> labels["SP500"].classes
('STOP_LOSS', 'VERTICAL', 'PROFIT_TAKE')
"""

import dataclasses
import inspect
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
# tests/test_labels.py), instead of the 7% FLAT sliver of seed 001's fixed band
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
    """

    values: pd.Series
    end_time: pd.Series
    forward_return: pd.Series
    kind: str = "regression"
    classes: tuple = ()

    @property
    def num_classes(self):
        """The number of classes (0 for regression)."""
        return len(self.classes)


# --- Shared pieces ---------------------------------------------------------


def _require(condition, name, value, expectation):
    if not condition:
        raise ConfigError(f"`{name}` must be {expectation}. Received: {name}={value!r}")


def _require_choice(name, value, choices):
    _require(value in choices, name, value, f"one of {choices}")


def _require_number(name, value, expectation, condition):
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    _require(is_number and condition(value), name, value, expectation)


def _require_window(name, value):
    is_integer = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    _require(is_integer and value >= 1, name, value, "an integer >= 1")


def _check_common(horizon, scaling):
    is_integer = isinstance(horizon, numbers.Integral) and not isinstance(horizon, bool)
    _require(is_integer and horizon >= 1, "horizon", horizon, ">= 1")
    # `scaling` is the config's `label_scaling`; the message uses that name.
    _require_choice("label_scaling", scaling, LABEL_SCALINGS)


def _check_pattern_options(quantile, min_history, no_pattern):
    _require_number("quantile", quantile, "in (0, 1)", lambda value: 0 < value < 1)
    _require_window("min_history", min_history)
    _require_choice("no_pattern", no_pattern, NO_PATTERN_CHOICES)


def _log_close(bars):
    return np.log(bars["close"].astype("float64"))


def _trailing_volatility(log_close):
    """Std of the last `VOLATILITY_WINDOW` daily log returns, bars up to t."""
    return log_close.diff().rolling(VOLATILITY_WINDOW).std()


def _forward_log_return(log_close, horizon):
    return log_close.shift(-horizon) - log_close


def _horizon_end_time(bars, horizon):
    return pd.Series(bars.index, index=bars.index).shift(-horizon)


def _past_quantile(signal, quantile, min_history):
    """The `quantile` of `signal` over its history up to and including t.

    Uses only values known at t; `min_history` non-NaN values are required
    before a threshold exists (NaN before). The signal at t is known at t, so
    including it is no leak.
    """
    return signal.expanding(min_periods=min_history).quantile(quantile)


def _forward_matrix(series, horizon):
    """`[rows, horizon]` array whose column k-1 holds `series` at t+k (NaN past the end)."""
    values = series.to_numpy(dtype=np.float64)
    num_rows = len(values)
    matrix = np.full((num_rows, horizon), np.nan)
    for offset in range(1, horizon + 1):
        if offset < num_rows:
            matrix[: num_rows - offset, offset - 1] = values[offset:]
    return matrix


def _make_label(bars, values, end_time, forward_return, kind, classes):
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


# --- Returns and directions -------------------------------------------------


def forward_return_label(bars, horizon=5, scaling="volatility"):
    """The forward log return `log(close[t + horizon] / close[t])`.

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

    Returns:
        A regression `Label`.

    Raises:
        ConfigError: for a horizon < 1 or an unknown scaling.
    """
    _check_common(horizon, scaling)
    log_close = _log_close(bars)
    forward_return = _forward_log_return(log_close, horizon)
    values = forward_return
    if scaling == "volatility":
        trailing_volatility = _trailing_volatility(log_close)
        values = forward_return / (trailing_volatility.where(trailing_volatility > 0) * np.sqrt(horizon))
    return _make_label(bars, values, _horizon_end_time(bars, horizon), forward_return, "regression", ())


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
    _check_common(horizon, scaling)
    log_close = _log_close(bars)
    squared = _forward_matrix(log_close.diff() ** 2, horizon)
    values = pd.Series(np.sqrt(squared.mean(axis=1)), index=bars.index)
    if scaling == "volatility":
        trailing_volatility = _trailing_volatility(log_close)
        values = values / trailing_volatility.where(trailing_volatility > 0)
    forward_return = _forward_log_return(log_close, horizon)
    return _make_label(bars, values, _horizon_end_time(bars, horizon), forward_return, "regression", ())


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
    _check_common(horizon, scaling)
    _require_choice("flat_band", flat_band, FLAT_BANDS)
    _require_number("flat_multiple", flat_multiple, ">= 0", lambda value: value >= 0)
    _require_number("flat_return", flat_return, ">= 0", lambda value: value >= 0)
    log_close = _log_close(bars)
    forward_return = _forward_log_return(log_close, horizon)
    if flat_band == "volatility":
        band = (flat_multiple * _trailing_volatility(log_close) * np.sqrt(horizon)).to_numpy()
    else:
        band = np.full(len(bars), float(flat_return))
    forward = forward_return.to_numpy()
    values = np.where(forward > 0, 2.0, 0.0)
    values = np.where((np.abs(forward) < band) | (forward == 0), 1.0, values)
    values[np.isnan(forward) | np.isnan(band)] = np.nan
    return _make_label(
        bars, values, _horizon_end_time(bars, horizon), forward_return, "multiclass", ("DOWN", "FLAT", "UP")
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
    _check_common(horizon, scaling)
    _require_choice("zero_return", zero_return, ZERO_RETURN_CHOICES)
    forward_return = _forward_log_return(_log_close(bars), horizon)
    forward = forward_return.to_numpy()
    values = np.where(forward > 0, 1.0, 0.0)
    values[np.isnan(forward)] = np.nan
    if zero_return == "nan":
        values[forward == 0] = np.nan
    return _make_label(bars, values, _horizon_end_time(bars, horizon), forward_return, "binary", ("DOWN", "UP"))


# --- Seed 004's pattern-validation targets ----------------------------------
#
# Each fires a detector at t (a signal above its own past `quantile`), then asks
# whether the bars t+1 .. t+horizon validate the pattern. Seed 004 took the
# 70th percentile over the whole series, so bars after t moved the threshold at
# t; here it is an expanding quantile over the signal's history up to t.


def _pattern_label(bars, horizon, signal, threshold, detected, validated, no_pattern, classes):
    """Assembles a pattern target.

    `detected` and `validated` are boolean arrays; rows where `signal` or
    `threshold` is NaN (warm-up) are unknown in both `no_pattern` modes, since
    whether a pattern fired is not known there either.
    """
    forward_return = _forward_log_return(_log_close(bars), horizon)
    values = np.where(validated, 1.0, 0.0)
    values[~detected] = 0.0 if no_pattern == "zero" else np.nan
    values[np.isnan(signal.to_numpy()) | np.isnan(threshold.to_numpy())] = np.nan
    # Every row uses bars up to t + horizon (a missed detection too, so that
    # purging treats all rows of this label alike).
    values[forward_return.isna().to_numpy()] = np.nan
    return _make_label(bars, values, _horizon_end_time(bars, horizon), forward_return, "binary", classes)


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
    _check_common(horizon, scaling)
    _require_window("momentum_window", momentum_window)
    _require_number("persistence", persistence, "in [0, 1)", lambda value: 0 <= value < 1)
    _check_pattern_options(quantile, min_history, no_pattern)
    log_close = _log_close(bars)
    momentum = log_close.diff(momentum_window)
    strength = momentum.abs()
    threshold = _past_quantile(strength, quantile, min_history)
    detected = (strength > threshold).to_numpy()
    forward_signs = np.sign(_forward_matrix(log_close.diff(), horizon))
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
    _check_common(horizon, scaling)
    _require_window("short_window", short_window)
    _require_window("long_window", long_window)
    _require(long_window > short_window, "long_window", long_window, f"> short_window ({short_window})")
    _check_pattern_options(quantile, min_history, no_pattern)
    squared_returns = _log_close(bars).diff() ** 2
    short_volatility = np.sqrt(squared_returns.rolling(short_window).mean())
    long_volatility = np.sqrt(squared_returns.rolling(long_window).mean())
    ratio = short_volatility / long_volatility.where(long_volatility > 0)
    threshold = _past_quantile(ratio, quantile, min_history)
    detected = (ratio > threshold).to_numpy()
    forward_volatility = np.sqrt(np.mean(_forward_matrix(squared_returns, horizon), axis=1))
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
    _check_common(horizon, scaling)
    _require_window("trend_window", trend_window)
    _require(trend_window >= 2, "trend_window", trend_window, ">= 2")
    _check_pattern_options(quantile, min_history, no_pattern)
    log_close = _log_close(bars)
    volatility = log_close.diff().rolling(trend_window).std()
    extension = log_close.diff(trend_window) / (volatility.where(volatility > 0) * np.sqrt(trend_window))
    strength = extension.abs()
    threshold = _past_quantile(strength, quantile, min_history)
    detected = (strength > threshold).to_numpy()
    forward = _forward_log_return(log_close, horizon).to_numpy()
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
    _check_common(horizon, scaling)
    _require_window("divergence_window", divergence_window)
    _check_pattern_options(quantile, min_history, no_pattern)
    log_close = _log_close(bars)
    volume = bars["volume"].astype("float64")
    signed_volume = (np.sign(log_close.diff()) * volume).rolling(divergence_window).sum()
    total_volume = volume.rolling(divergence_window).sum()
    flow = signed_volume / total_volume.where(total_volume > 0)
    divergence = -np.sign(log_close.diff(divergence_window)) * flow
    threshold = _past_quantile(divergence, quantile, min_history)
    detected = ((divergence > 0) & (divergence > threshold)).to_numpy()
    forward = _forward_log_return(log_close, horizon).to_numpy()
    validated = (np.sign(forward) == np.sign(flow.to_numpy())) & (forward != 0)
    return _pattern_label(
        bars, horizon, divergence, threshold, detected, validated, no_pattern, ("unresolved", "resolved")
    )


# --- Triple barrier and meta-labels (Lopez de Prado, AFML ch. 3) ------------


def _check_barrier_options(pt_multiple, sl_multiple):
    _require_number("pt_multiple", pt_multiple, "> 0 (inf disables it)", lambda value: value > 0)
    _require_number("sl_multiple", sl_multiple, "> 0 (inf disables it)", lambda value: value > 0)


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
    log_close = _log_close(bars)
    close = log_close.to_numpy()
    log_high = np.log(bars["high"].astype("float64"))
    log_low = np.log(bars["low"].astype("float64"))
    volatility = _trailing_volatility(log_close).to_numpy()
    width = np.where(volatility > 0, volatility, np.nan) * np.sqrt(horizon)
    side = np.asarray(side, dtype=np.float64)
    long = side > 0
    # In price terms: a long trade's profit-take is above, a short trade's below.
    upper_width = np.where(long, pt_multiple, sl_multiple) * width
    lower_width = np.where(long, sl_multiple, pt_multiple) * width
    highs = _forward_matrix(log_high, horizon) - close[:, None]
    lows = _forward_matrix(log_low, horizon) - close[:, None]
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
    vertical_return = side * (_forward_log_return(log_close, horizon).to_numpy())
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
    _check_common(horizon, scaling)
    _check_barrier_options(pt_multiple, sl_multiple)
    _require_choice("vertical_label", vertical_label, VERTICAL_LABELS)
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
    forward_return = _forward_log_return(_log_close(bars), horizon)
    return _make_label(bars, values, _exit_end_time(bars, exit_offset), forward_return, kind, classes)


def _check_rsi_options(rsi_window, rsi_oversold, rsi_overbought):
    _require_window("rsi_window", rsi_window)
    _require_number("rsi_oversold", rsi_oversold, "in [0, 100]", lambda value: 0 <= value <= 100)
    _require_number(
        "rsi_overbought",
        rsi_overbought,
        f"in [rsi_oversold ({rsi_oversold}), 100]",
        lambda value: rsi_oversold <= value <= 100,
    )


def momentum_side(bars, momentum_window=20):
    """A primary side: the sign of the `momentum_window`-bar log return (+1, -1, 0), known at t."""
    _require_window("momentum_window", momentum_window)
    return np.sign(_log_close(bars).diff(momentum_window))


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
    _check_common(horizon, scaling)
    _check_barrier_options(pt_multiple, sl_multiple)
    # Checked whichever side is used, so a typo fails even where it is unused.
    _require_window("momentum_window", momentum_window)
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
    forward_return = _forward_log_return(_log_close(bars), horizon)
    return _make_label(
        bars, values, _exit_end_time(bars, exit_offset), forward_return, "binary", ("UNPROFITABLE", "PROFITABLE")
    )


# --- Registry ---------------------------------------------------------------

LABELS = {
    "forward_return": forward_return_label,
    "forward_volatility": forward_volatility_label,
    "direction": direction_label,
    "direction_binary": direction_binary_label,
    "momentum_persistence": momentum_persistence_label,
    "volatility_regime_shift": volatility_regime_shift_label,
    "trend_exhaustion": trend_exhaustion_label,
    "volume_divergence": volume_divergence_label,
    "triple_barrier": triple_barrier_label,
    "meta_label": meta_label,
}

_COMMON_ARGUMENTS = ("bars", "horizon", "scaling")


def label_options(name):
    """The options of label `name` beyond `horizon` and `scaling`, with their defaults.

    Args:
        name: a key of `LABELS`.

    Returns:
        A dict option name -> default value.

    Raises:
        ConfigError: for an unknown label name, listing the known ones.
    """
    if name not in LABELS:
        raise ConfigError(f"Unknown label {name!r}. Known: {', '.join(LABELS)}")
    parameters = inspect.signature(LABELS[name]).parameters
    return {key: parameter.default for key, parameter in parameters.items() if key not in _COMMON_ARGUMENTS}


def compute_labels(panel, name="forward_return", horizon=5, scaling="volatility", **options):
    """Computes label `name` for every symbol of `panel`.

    Args:
        panel: a `Panel` (or any mapping symbol -> canonical OHLCV bars).
        name: a key of `LABELS`. Defaults to `"forward_return"`.
        horizon: bars ahead. Defaults to `5`.
        scaling: `"none"` or `"volatility"` (only `forward_return` uses it).
            Defaults to `"volatility"`.
        **options: the label's own options, see `label_options(name)`.

    Returns:
        A dict symbol -> `Label`.

    Raises:
        ConfigError: for an unknown label name, an option the label does not
            have, or a bad option value.
    """
    known_options = label_options(name)
    unknown = [option for option in options if option not in known_options]
    if unknown:
        received = ", ".join(f"{option}={options[option]!r}" for option in unknown)
        raise ConfigError(
            f"Label {name!r} has no option(s) {unknown}. Known options: "
            f"{', '.join(known_options) or 'none'}. Received: {received}"
        )
    function = LABELS[name]
    return {
        symbol: function(bars, horizon=horizon, scaling=scaling, **options) for symbol, bars in panel.items()
    }
