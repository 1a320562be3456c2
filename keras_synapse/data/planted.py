"""Planted predictable components of known size, each with an exact oracle.

A synthetic universe (`keras_synapse.data.synthetic`) starts from returns
with nothing predictable in them, the *noise* `n_it` (market, sector and
idiosyncratic shocks times the volatility regime). One of these kinds adds a
predictable part. Each is a documented effect of real markets, at the sizes
real markets show when asked for by oracle IC (0.02-0.08):

| kind | what drives next returns | a linear model on the last bar's features |
|---|---|---|
| `volume` | this bar's volume surprise `s_it` drifts the next `horizon` returns by `lambda sigma_it s_it / horizon` each | sees it (volume z-score) |
| `ar1` | time-series momentum: `r_it = n_it + phi r_i,t-1` | sees it (last return) |
| `cross_sectional` | short-term reversal against the universe: `r_it = n_it - gamma (r_i,t-1 - mean_j r_j,t-1)` | sees the symbol's part of it, not the universe's mean |
| `nonlinear` | volume-conditioned reversal (Campbell, Grossman & Wang 1993): `r_it = n_it - kappa s_i,t-1 r_i,t-1` | sees nothing: the drift is a product of two features, uncorrelated with each |

The oracle at bar `t` is the exact conditional expectation of the forward
`horizon`-bar log return given everything known at the close of `t` (for
`volume`, restricted to the planted part, as the rest has mean zero):

- `volume`: the drifts still to come, `sum_(k=0..h-1) (h - k) a_i,t-k`;
- `ar1`: `(phi + phi^2 + .. + phi^h) r_it`;
- `cross_sectional`: `((-gamma) + .. + (-gamma)^h) (r_it - mean_j r_jt)`;
- `nonlinear`: `-kappa s_it r_it` (later drifts multiply surprises not yet
  drawn, whose mean is zero).

No predictor that sees only bars up to `t` beats it on average, so a model's
IC over the oracle's IC on the same windows says how much of the knowable
edge it recovered. `population_oracle_ic` gives the oracle's correlation with
the realized forward return in the long run, exactly, for any volatility
process (the regimes scale every term alike); `strength_for_oracle_ic`
inverts it, which is how `generate_universe(oracle_ic=...)` calibrates a
kind's coefficient.
"""

import numpy as np
from scipy import optimize

from keras_synapse.errors import ConfigError

SIGNAL_KINDS = ("volume", "ar1", "cross_sectional", "nonlinear")

# The largest coefficient a recursive kind may take: beyond it returns stop
# being (nearly) uncorrelated white noise plus a small edge.
_MAX_RECURSIVE_COEFFICIENT = 0.9
_MAX_VOLUME_STRENGTH = 50.0


def check_kind(kind):
    """Raises `ConfigError` unless `kind` is one of `SIGNAL_KINDS`."""
    if kind not in SIGNAL_KINDS:
        raise ConfigError(f"`signal` must be one of {SIGNAL_KINDS}. Received: signal={kind!r}")


def plant_signal(kind, strength, noise, volatility, volume_surprise, horizon):
    """Adds a planted component to noise returns and computes the oracle.

    Args:
        kind: one of `SIGNAL_KINDS`.
        strength: the kind's coefficient (`lambda`, `phi`, `gamma` or
            `kappa`); `0` plants nothing.
        noise: `[bars, symbols]` unpredictable log returns.
        volatility: `[bars, symbols]` each return's current standard
            deviation (for `volume`).
        volume_surprise: `[bars, symbols]` standard normal volume surprises.
        horizon: the forward horizon of the oracle, in bars.

    Returns:
        `(log_returns, expected_return)`, both `[bars, symbols]`.
    """
    check_kind(kind)
    if strength == 0:
        return noise.copy(), np.zeros_like(noise)
    if kind == "volume":
        drift_per_bar = strength * volatility * volume_surprise / horizon
        planted, expected_return = _spread_drifts(drift_per_bar, horizon)
        return noise + planted, expected_return
    # The recursive kinds: each bar's return feeds the next bar's drift.
    returns = noise.copy()
    for bar in range(1, len(returns)):
        previous = returns[bar - 1]
        if kind == "ar1":
            returns[bar] += strength * previous
        elif kind == "cross_sectional":
            returns[bar] -= strength * (previous - previous.mean())
        else:
            returns[bar] -= strength * volume_surprise[bar - 1] * previous
    if kind == "ar1":
        expected_return = _geometric_sum(strength, horizon) * returns
    elif kind == "cross_sectional":
        expected_return = _geometric_sum(-strength, horizon) * (returns - returns.mean(axis=1, keepdims=True))
    else:
        expected_return = -strength * volume_surprise * returns
    return returns, expected_return


def population_oracle_ic(kind, strength, horizon=5, dispersion_share=1.0, *, window="forward"):
    """The long-run correlation of the oracle with the realized return, pooled over symbols.

    Args:
        kind: one of `SIGNAL_KINDS`.
        strength: the kind's coefficient, >= 0.
        horizon: the horizon. Defaults to `5`.
        dispersion_share: for `cross_sectional`, the share of the noise
            variance that is not common to the universe,
            `mean_i Var(n_i - mean_j n_j) / mean_i Var(n_i)` (see
            `dispersion_share`). Defaults to `1.0`.
        window: `"forward"` (bars `t+1 .. t+horizon`) or, for `volume` only,
            `"past"` (bars `t-horizon+1 .. t`). Defaults to `"forward"`.

    Returns:
        The correlation, in [0, 1).
    """
    check_kind(kind)
    if window not in ("forward", "past") or (window == "past" and kind != "volume"):
        raise ConfigError(f"`window` must be 'forward' (or 'past' for the volume kind). Received: window={window!r}")
    if strength == 0:
        return 0.0
    if kind == "volume":
        return _volume_correlation(strength, horizon, window)
    if kind == "nonlinear":
        # Every term of the forward sum is a martingale difference of variance
        # E[r^2]; the oracle is one of them, scaled by kappa.
        return float(strength / np.sqrt(horizon))
    if kind == "ar1":
        return _recursive_correlation(strength, horizon, dispersion_share=1.0, common=False)
    return _recursive_correlation(-strength, horizon, dispersion_share, common=True)


def strength_for_oracle_ic(kind, oracle_ic, horizon=5, dispersion_share=1.0):
    """The coefficient of `kind` whose population oracle IC is `oracle_ic`.

    Raises:
        ConfigError: when no coefficient in the kind's range reaches it.
    """
    check_kind(kind)
    if oracle_ic == 0:
        return 0.0
    upper = _MAX_VOLUME_STRENGTH if kind == "volume" else _MAX_RECURSIVE_COEFFICIENT
    highest = population_oracle_ic(kind, upper, horizon, dispersion_share)
    if not 0 < oracle_ic < highest:
        raise ConfigError(f"`oracle_ic` must be in (0, {highest:.3f}) for the {kind} kind at horizon {horizon}. "
                          f"Received: oracle_ic={oracle_ic!r}")
    return float(optimize.brentq(
        lambda strength: population_oracle_ic(kind, strength, horizon, dispersion_share) - oracle_ic,
        0.0, upper, xtol=1e-10))


def dispersion_share(covariance):
    """The share of a noise covariance that is not common to the universe.

    Args:
        covariance: `[symbols, symbols]` covariance of one bar's noise.

    Returns:
        `trace(M C M) / trace(C)` with `M = I - 1/N`: 1 for independent
        symbols of one size, less the more they move together.
    """
    num_symbols = len(covariance)
    demean = np.eye(num_symbols) - 1.0 / num_symbols
    return float(np.trace(demean @ covariance @ demean) / np.trace(covariance))


def _geometric_sum(ratio, horizon):
    return float(sum(ratio**power for power in range(1, horizon + 1)))


def _spread_drifts(drift_per_bar, horizon):
    """Each bar's drift, added to each of the next `horizon` bars, and the drifts still to come."""
    num_bars = drift_per_bar.shape[0]
    planted = np.zeros_like(drift_per_bar)
    expected_return = np.zeros_like(drift_per_bar)
    for lag in range(1, min(horizon, num_bars - 1) + 1):
        planted[lag:] += drift_per_bar[:-lag]
    for lag in range(min(horizon, num_bars)):
        expected_return[lag:] += (horizon - lag) * drift_per_bar[: num_bars - lag]
    return planted, expected_return


def _volume_correlation(strength, horizon, window):
    # In units of Var(a) = lambda^2 E[sigma^2] / horizon^2, with per-bar noise
    # variance horizon^2 / lambda^2 in the same units: the oracle weighs
    # surprise t-k by horizon-k; a realized window weighs each surprise by how
    # many of its drifts fall inside it (1, 2, .., horizon, .., 2, 1).
    drift_variance = (strength / horizon) ** 2
    oracle_weights = np.arange(horizon, 0, -1, dtype=float)
    window_weights = np.concatenate([np.arange(1, horizon + 1), np.arange(horizon - 1, 0, -1)]).astype(float)
    oracle_variance = drift_variance * np.sum(oracle_weights**2)
    window_variance = horizon + drift_variance * np.sum(window_weights**2)
    if window == "forward":
        covariance = oracle_variance
    else:
        lags = np.arange(1, horizon)
        covariance = drift_variance * np.sum((horizon - lags) * lags)
    return float(covariance / np.sqrt(oracle_variance * window_variance))


def _recursive_correlation(ratio, horizon, dispersion_share, common):
    """Oracle IC of `x_(t+1) = n_(t+1) + ratio * y_t`, in units of the pooled noise variance.

    `y` is the return itself (`common=False`, AR(1)) or the return less the
    universe mean (`common=True`), whose innovations carry `dispersion_share`
    of the noise variance. The oracle is `S y_t` with `S = sum ratio^k`; the
    innovation at bar `t+j` adds its noise once and its `y`-part to the
    `horizon - j` later bars with weights `ratio^m`.
    """
    share = dispersion_share if common else 1.0
    total = _geometric_sum(ratio, horizon)
    state_variance = share / (1 - ratio**2)
    forward_variance = total**2 * state_variance
    for step in range(1, horizon + 1):
        carried = _geometric_sum(ratio, horizon - step)
        forward_variance += 1 + (2 * carried + carried**2) * share
    return float(abs(total) * np.sqrt(state_variance) / np.sqrt(forward_variance))
