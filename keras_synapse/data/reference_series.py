"""Reference series of a synthetic universe: its market and sector indexes, a VIX and a VIX3M.

Cross-asset features (seed 004's `pattern17`) read a market index, the
symbol's sector index and the VIX term structure. A synthetic universe has no
real ones, and real ones would be unrelated to its symbols, so they are made
from the universe's own draws (`keras_synapse.data.synthetic`): they relate
to its symbols as the real indexes relate to stocks. Per bar t, with the
regime's volatility multiplier `v_t`, the market shock `m_t` and sector k's
shock `f_kt` of the universe:

- `MARKET`: log return `v_t * s_m * m_t`, the market factor itself (every
  symbol has a beta in [0.6, 1.4] to it).
- `SECTOR-k`: log return `v_t * (s_m * m_t + s_f * f_kt)`, what the symbols
  of sector k hold in common, as a sector ETF does.
- `VIX` and `VIX3M`: the market's expected volatility over the next 21 and
  63 bars, annualized in percent, given today's regime (from the two-state
  chain's transition probabilities: `E[v_(t+j) | regime_t]` averaged over
  j = 1 .. 21 or 63), times a volatility risk premium of 1.15 (implied
  volatility exceeds realized, as for the real index), times `exp(n_t)`, a
  slow AR(1) noise (coefficient 0.95, stationary standard deviation 0.08)
  that `VIX3M` carries at half weight. Calm markets show contango (VIX <
  VIX3M: turbulence may come), turbulent ones backwardation (calm is
  expected back), as the real term structure does.

Every value at bar t uses draws at or before t only. Bars: open at the
previous close (the first bar at its close), high and low the larger and
smaller of open and close, volume 0, as index feeds report it. The noise
has its own seed stream, so the universe's symbols are the same with or
without these series.
"""

import numpy as np
import pandas as pd

MARKET_SYMBOL = "MARKET"
VIX_SYMBOL = "VIX"
VIX3M_SYMBOL = "VIX3M"
SECTOR_PREFIX = "SECTOR-"
_START_LEVEL = 1000.0
_VOLATILITY_RISK_PREMIUM = 1.15
_NOISE_PERSISTENCE = 0.95
_NOISE_STANDARD_DEVIATION = 0.08
_BARS_PER_YEAR = 252


def sector_symbol(sector):
    """The reference symbol of sector number `sector`, e.g. `SECTOR-0`."""
    return f"{SECTOR_PREFIX}{sector}"


def reference_frames(index, volatility_multiplier, market_part, sector_parts, market_volatility, regime_chain, seed):
    """The reference series' bars (see the module docstring).

    Args:
        index: the universe's timestamps.
        volatility_multiplier: `v_t`, shape `(num_bars,)`.
        market_part: `s_m * m_t`, shape `(num_bars,)`.
        sector_parts: `s_f * f_kt`, shape `(num_bars, num_sectors)`.
        market_volatility: `s_m`, the market's calm one-bar volatility.
        regime_chain: `(calm_to_turbulent, turbulent_to_calm,
            turbulent_volatility_ratio, regime)`, with `regime` the 0/1 state
            per bar.
        seed: the universe's seed (the noise draws from its own stream).

    Returns:
        A dict symbol -> canonical OHLCV frame on `index`: `MARKET`,
        `SECTOR-0` ..., `VIX`, `VIX3M`.
    """
    calm_to_turbulent, turbulent_to_calm, turbulent_ratio, regime = regime_chain
    market_return = volatility_multiplier * market_part
    closes = {MARKET_SYMBOL: _START_LEVEL * np.exp(np.cumsum(market_return))}
    for sector in range(sector_parts.shape[1]):
        closes[sector_symbol(sector)] = _START_LEVEL * np.exp(
            np.cumsum(volatility_multiplier * (market_part + sector_parts[:, sector])))
    noise = _ar1_noise(len(index), seed)
    for symbol, bars_ahead, weight in ((VIX_SYMBOL, 21, 1.0), (VIX3M_SYMBOL, 63, 0.5)):
        multiplier = _expected_multiplier(regime, bars_ahead, calm_to_turbulent, turbulent_to_calm, turbulent_ratio)
        closes[symbol] = (100 * np.sqrt(_BARS_PER_YEAR) * market_volatility * multiplier * _VOLATILITY_RISK_PREMIUM
                          * np.exp(weight * noise))
    return {symbol: _bars(close, index) for symbol, close in closes.items()}


def _expected_multiplier(regime, bars_ahead, calm_to_turbulent, turbulent_to_calm, turbulent_ratio):
    """`E[v_(t+j) | regime_t]` averaged over j = 1 .. bars_ahead, from the chain's j-step probabilities."""
    transition = np.array([[1 - calm_to_turbulent, calm_to_turbulent], [turbulent_to_calm, 1 - turbulent_to_calm]])
    levels = np.array([1.0, turbulent_ratio])
    step, total = np.eye(2), np.zeros(2)
    for _ in range(bars_ahead):
        step = step @ transition
        total += step @ levels
    return (total / bars_ahead)[np.asarray(regime, dtype=int)]


def _ar1_noise(num_bars, seed):
    generator = np.random.default_rng(np.random.SeedSequence([int(seed), 4004]))
    # The start first, then one innovation per bar: the first n values are the same for any num_bars >= n.
    level = generator.standard_normal() * _NOISE_STANDARD_DEVIATION
    innovations = generator.standard_normal(num_bars) * _NOISE_STANDARD_DEVIATION * np.sqrt(1 - _NOISE_PERSISTENCE**2)
    noise = np.empty(num_bars)
    for bar in range(num_bars):
        level = _NOISE_PERSISTENCE * level + innovations[bar]
        noise[bar] = level
    return noise


def _bars(close, index):
    open_ = np.concatenate([close[:1], close[:-1]])
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close),
                         "close": close, "volume": np.zeros(len(close))}, index=index)
