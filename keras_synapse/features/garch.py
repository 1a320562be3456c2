"""A GARCH(1,1) one-step-ahead volatility forecast fitted on past bars only.

The parameters are re-estimated with the `arch` package at bar positions
counted from the start of the series (`min_history`, then every
`refit_every` bars, sooner after a rejected fit), each time on every return
up to and including that bar (an expanding window). Between two refits the conditional
variance is carried forward by the GARCH recursion with the last fitted
parameters, so the forecast at bar t uses bars at or before t only, and
computing it on `bars[: t + 1]` gives the same values at rows <= t as on the
whole series.

Model, with `e_t` the scaled log return of bar t (zero mean, normal errors):

    sigma2[t + 1] = omega + alpha * e_t ** 2 + beta * sigma2[t]

The value at bar t is `sigma[t + 1]`, the volatility forecast for the next
bar's log return, in log-return units (not percent).
"""

import logging
import warnings

import numpy as np
import pandas as pd
from arch.univariate import GARCH, Normal, ZeroMean
from arch.utility.exceptions import ConvergenceWarning, StartingValueWarning
from scipy.signal import lfilter

from keras_synapse.errors import ConfigError

logger = logging.getLogger(__name__)

GARCH_REFIT_EVERY = 252
GARCH_MIN_HISTORY = 252
# After a rejected fit the next one is tried this many bars later, then at
# doubling intervals up to `refit_every`: a degenerate first fit on a calm
# year (the S&P 500's 1999) is replaced within a month, not kept for a year.
GARCH_RETRY_EVERY = 21
# The first forecast sits on bar position `min_history` (the first bar has no
# return, so that is `min_history` returns in); warm-up counts rows up to it.
GARCH_WARMUP = GARCH_MIN_HISTORY + 1

# Fewer returns than this cannot pin down three GARCH parameters.
_MINIMUM_FIT_HISTORY = 30
# A fit at or above this persistence (alpha + beta) is rejected: on returns
# with little volatility clustering (e.g. i.i.d. noise) the optimizer lands on
# the boundary alpha = 0, beta = 1, and that integrated model lets the
# forecast drift up by omega every bar until the next refit.
_MAXIMUM_PERSISTENCE = 0.999
# A fit with alpha below this ignores shocks: its forecast only decays towards
# omega / (1 - beta) (the S&P 500's 1999 gives alpha = 0, beta = 0.997).
_MINIMUM_ALPHA = 0.01
# arch bounds omega below by 1e-8 x the mean squared return; a fit that sits
# there (within this multiple of the mean squared return) is a boundary answer.
_OMEGA_AT_BOUND = 1e-6
# Used only when the very first fit fails: a typical daily-equity persistence
# with the variance targeted at the sample variance (omega = var * (1 - a - b)).
_FALLBACK_ALPHA = 0.05
_FALLBACK_BETA = 0.90


def garch_volatility_forecast(bars, refit_every=GARCH_REFIT_EVERY, min_history=GARCH_MIN_HISTORY,
                              retry_every=GARCH_RETRY_EVERY):
    """Computes a GARCH(1,1) one-step-ahead volatility forecast, past bars only.

    The log close-to-close returns are divided by their population standard
    deviation over the first `min_history` returns (fixed once, so the
    optimizer sees unit-variance data whatever the bar frequency or price
    level) and fitted with `arch_model(mean="Zero", vol="GARCH", p=1, q=1, dist="normal")`.
    A zero mean is used because the mean of a per-bar return is far below its
    standard deviation: estimating it costs optimizer time and barely moves
    the forecast.

    At each refit position p (`min_history`, then every `refit_every` bars
    counted from the series start, never from its end) the model is fitted
    on the returns of bars 1..p, warm-started from the previous fit's
    parameters, and the recursion restarts from that fit's own conditional
    variance at bar p, so the value at p equals
    `fit_result.forecast(horizon=1)`. Between refits it continues with the last
    fitted parameters, which equals `arch_model(...).fix(params)` on the
    returns up to t.

    A fit is rejected, logged at debug level, when it does not converge or is
    degenerate: persistence alpha + beta of 0.999 or more (the integrated
    boundary answer the optimizer gives on returns without volatility
    clustering), alpha below 0.01 (a forecast that ignores shocks), or omega
    at its lower bound. The recursion then continues with the previous
    parameters (or, if the first fit fails, with alpha=0.05, beta=0.90 and
    omega targeting the sample's mean squared return), and the next fit is
    tried `retry_every` bars later, then at doubling intervals up to
    `refit_every`, until one is accepted. Which fits are accepted depends on
    past returns only, so the forecast at bar t is still the same on
    `bars[: t + 1]` as on the whole series.

    Cost: one fit per refit, about 2 to 8 ms each (growing with the
    expanding window), about 0.1 s for 5040 bars with the defaults (19
    fits).

    Args:
        bars: one symbol's canonical OHLCV frame (see `Panel`); only `close`
            is used.
        refit_every: bars between two parameter re-estimations. Defaults to
            `252`.
        min_history: returns needed before the first fit; rows before bar
            position `min_history` are NaN. Defaults to `252`.
        retry_every: bars from a rejected fit to the next attempt. Defaults
            to `21`.

    Returns:
        A float64 `pandas.Series` named `garch_volatility_forecast` on
        `bars.index`: at bar t, the forecast standard deviation of the log
        return of bar t + 1. The first `min_history` rows are NaN.

    Raises:
        ConfigError: when `refit_every` or `retry_every` < 1, or
            `min_history` < 30.

    Example:

    >>> from keras_synapse.data.synthetic import generate_universe
    >>> bars = generate_universe(num_symbols=1, num_bars=600).panel["SYN-00"]
    >>> forecast = garch_volatility_forecast(bars)
    >>> int(forecast.notna().sum())
    348
    """
    for name, value in (("refit_every", refit_every), ("retry_every", retry_every)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
    if not isinstance(min_history, (int, np.integer)) or min_history < _MINIMUM_FIT_HISTORY:
        raise ConfigError(
            f"`min_history` must be an integer >= {_MINIMUM_FIT_HISTORY}. Received: min_history={min_history!r}"
        )
    num_bars = len(bars)
    forecast_variance = np.full(num_bars, np.nan)
    if num_bars <= min_history:
        return pd.Series(forecast_variance, index=bars.index, name="garch_volatility_forecast")

    returns = np.diff(np.log(bars["close"].to_numpy(dtype=np.float64)))
    early_std = float(np.std(returns[:min_history]))
    scale = 1.0 / early_std if early_std > 0 else 1.0
    scaled_returns = returns * scale
    # Indexed by bar position: squared_shock[t] is e_t ** 2, the shock of bar t.
    squared_shock = np.concatenate([[np.nan], scaled_returns**2])

    parameters, position, retry_interval = None, min_history, None
    while position < num_bars:
        sample = scaled_returns[:position]
        fitted = _fit_garch(sample, starting_values=parameters, position=position)
        if fitted is None:
            # Try again sooner than a regular refit, backing off while fits keep failing.
            retry_interval = retry_every if retry_interval is None else retry_interval * 2
            segment_end = min(position + min(retry_interval, refit_every), num_bars)
        else:
            retry_interval = None
            segment_end = min(position + refit_every, num_bars)
        if fitted is None and parameters is not None:
            # Keep the previous parameters and simply continue the recursion.
            omega, alpha, beta = parameters
            previous_variance = forecast_variance[position - 1]
        else:
            if fitted is None:
                sample_variance = float(np.mean(sample**2))
                parameters = np.array(
                    [sample_variance * (1 - _FALLBACK_ALPHA - _FALLBACK_BETA), _FALLBACK_ALPHA, _FALLBACK_BETA]
                )
                fitted = parameters, _conditional_variance(sample, parameters)[-1]
            # Restart from the fit's own variance at bar p (not from the old
            # path): the value at a refit bar is then arch's own forecast.
            parameters, previous_variance = fitted
            omega, alpha, beta = parameters
        # forecast[t] = omega + alpha * e_t^2 + beta * forecast[t - 1] is a
        # first-order linear filter of e^2 once the parameters are fixed;
        # `zi` carries the variance of bar p, forecast[p - 1] or the fit's.
        forecast_variance[position:segment_end] = lfilter(
            [1.0],
            [1.0, -beta],
            omega + alpha * squared_shock[position:segment_end],
            zi=[beta * previous_variance],
        )[0]
        position = segment_end

    return pd.Series(np.sqrt(forecast_variance) / scale, index=bars.index, name="garch_volatility_forecast")


class _WarmStartedGARCH(GARCH):
    """GARCH(1,1) that starts from given parameters instead of arch's grid search.

    `fit(starting_values=...)` already starts the optimizer there, but arch
    still runs its 48-point grid search first (about a third of a warm fit's
    time) and then only uses it to initialize a scratch variance array; the
    fitted parameters are the same.
    """

    def __init__(self, starting_values=None):
        super().__init__(p=1, o=0, q=1)
        self._warm_start = None if starting_values is None else np.asarray(starting_values, dtype=np.float64)

    def starting_values(self, resids):
        if self._warm_start is None:
            return super().starting_values(resids)
        return self._warm_start


def _garch_model(sample, starting_values=None):
    """`arch_model(sample, mean="Zero", vol="GARCH", p=1, q=1, dist="normal", rescale=False)`, warm-startable."""
    return ZeroMean(sample, volatility=_WarmStartedGARCH(starting_values), distribution=Normal(), rescale=False)


def _fit_garch(sample, starting_values, position):
    """Fits GARCH(1,1) on `sample`; returns (omega, alpha, beta) and the last conditional variance, or None."""
    if not np.any(sample):
        logger.debug("GARCH fit at bar position %d skipped: every return is 0.", position)
        return None
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # A rejected fit is reported below at debug level; arch's warnings
        # (e.g. a warm start outside this sample's bounds, or log(0) on a
        # nearly flat sample) would only repeat it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", StartingValueWarning)
        try:
            result = _garch_model(sample, starting_values).fit(
                disp="off", show_warning=False, starting_values=starting_values
            )
        except (ValueError, np.linalg.LinAlgError) as error:
            logger.debug("GARCH fit at bar position %d failed (%s); keeping the previous parameters.", position, error)
            return None
    parameters = result.params.to_numpy(dtype=np.float64)
    last_variance = float(result.conditional_volatility[-1]) ** 2
    omega, alpha, beta = parameters
    problem = None
    if result.convergence_flag != 0:
        problem = f"did not converge (flag {result.convergence_flag})"
    elif not (np.all(np.isfinite(parameters)) and np.isfinite(last_variance)):
        problem = "non-finite parameters or variance"
    elif alpha + beta >= _MAXIMUM_PERSISTENCE:
        problem = f"persistence {alpha + beta:.4f} >= {_MAXIMUM_PERSISTENCE}"
    elif alpha < _MINIMUM_ALPHA:
        problem = f"alpha {alpha:.3g} < {_MINIMUM_ALPHA} ignores shocks"
    elif omega <= _OMEGA_AT_BOUND * float(np.mean(sample**2)):
        problem = f"omega {omega:.3g} at its lower bound"
    if problem:
        logger.debug("GARCH fit at bar position %d rejected: %s (parameters %s); keeping the previous parameters "
                     "and retrying sooner.", position, problem, parameters)
        return None
    return parameters, last_variance


def _conditional_variance(sample, parameters):
    """The in-sample conditional variance of `sample` under fixed parameters, as `arch` computes it."""
    with np.errstate(divide="ignore", invalid="ignore"):  # the unused likelihood takes log(0) on flat data
        return np.asarray(_garch_model(sample).fix(parameters).conditional_volatility, dtype=np.float64) ** 2
