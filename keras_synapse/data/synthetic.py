"""A seeded synthetic OHLCV universe with a known, optional edge.

Real markets never say how much is predictable; a synthetic universe does. It
lets a test or an experiment ask two questions with known answers: does the
pipeline find nothing where there is nothing (`signal_strength=0`), and does it
find a planted edge of known size without peeking at the future?

How the bars are made (per bar `t`, per symbol `i`, all draws seeded):

- **Regime.** One market-wide two-state Markov chain, calm (0) or turbulent
  (1). Each bar a calm market turns turbulent with probability
  `calm_to_turbulent` and a turbulent one calms with probability
  `turbulent_to_calm` (defaults: spells of ~100 and ~25 bars, turbulent ~20%
  of the time). Turbulence multiplies every volatility by
  `turbulent_volatility_ratio`: `v_t = 1` or `turbulent_volatility_ratio`.
- **Returns.** The close-to-close log return is
  `r_it = v_t * (beta_i * m_t + f_(k(i),t) + e_it) + planted_it`, with a common
  market return `m_t`, one return per sector `f_kt` (symbol `i` sits in sector
  `i % num_sectors`) and an idiosyncratic `e_it`, all independent Gaussians;
  `beta_i` is drawn in [0.6, 1.4]. The market factor makes every pair of
  symbols positively correlated, sectors make pairs in one sector more so.
  The symbol's current volatility (the standard deviation of the unplanted
  part) is `sigma_it = v_t * sqrt(beta_i^2 s_m^2 + s_f^2 + s_e,i^2)`, about 1.6%
  a day when calm. There is no drift: apart from the planted part, log prices
  are driftless random walks, so with `signal_strength=0` nothing is
  predictable, not even the sign of the average return.
- **Open, high, low.** Each return is split into an overnight gap
  (open_t / close_(t-1)) carrying ~20% of its variance and an intraday part
  (close_t / open_t), uncorrelated, summing to `r_it` exactly. High and low
  are the extremes of a Brownian bridge from open to close with the intraday
  variance, sampled exactly, so high >= max(open, close), low <= min(open,
  close), and every price is positive.
- **Volume.** Lognormal: `log volume_it = base_i + log(v_t) + 0.35 * s_it`, so
  volume rises with volatility, with a standard normal *volume surprise*
  `s_it`. The surprise is always drawn, so the same seed gives the same
  volumes at any `signal_strength`.

The planted edge (only when `signal_strength` > 0 or `oracle_ic` > 0): one
of the kinds of `keras_synapse.data.planted`, chosen by `signal`: a volume
surprise that drifts the next returns (`volume`, the default), time-series
momentum (`ar1`), short-term reversal against the universe
(`cross_sectional`) or a volume-conditioned reversal no linear model can see
(`nonlinear`). `oracle_ic` asks for a strength by what it is worth: the
population correlation of the oracle with the realized forward return (real
published edges: 0.02-0.05); `signal_strength` gives the kind's raw
coefficient instead.

For the `volume` kind with strength `lambda`, the volume surprise at bar `u`
adds a drift `a_iu = lambda * sigma_iu * s_iu / horizon` to each of the next
`horizon` log returns, bars `u+1 .. u+horizon`. A one-standard-deviation
volume surprise thus moves the price by `lambda` one-bar standard deviations
over the following `horizon` bars. The surprise is visible in bar `u`'s own
volume, so a model that sees bars up to `t` can in principle recover it (it
must estimate `base_i`, the regime and `sigma` from the past; the oracle
knows them).

The oracle, `SyntheticUniverse.expected_return[symbol][t]`, is
`E[log(close_(t+horizon) / close_t) | everything known at the close of t]`
(for `volume`, restricted to the planted part, whose complement has mean
zero): for `volume`, the drifts still to come in bars `t+1 .. t+horizon`
from surprises already seen, `sum_(k=0..horizon-1) (horizon - k) * a_(t-k)`;
the other kinds' oracles are in `keras_synapse.data.planted`. No predictor
that sees only bars up to `t` can beat it on average. Near the end of the
sample the oracle still holds its value although the future closes do not
exist.

What an oracle achieves: its correlation with the realized forward
`horizon`-bar log return is `SyntheticUniverse.oracle_ic` (and
`oracle_correlation(lambda, horizon)` for the volume kind: for `horizon=5`
~0.066 at `lambda=0.1`, ~0.16 at 0.25, ~0.31 at 0.5 and ~0.51 at 1). Because
the drifts of one surprise span `horizon` bars, the volume oracle also
correlates a little with the *past* `horizon`-bar return (surprises
`t-horizon+1 .. t-1` pushed both): ~0.024 at `lambda=0.1`, ~0.11 at 0.5
(`oracle_correlation(..., window="past")`). That is the only link to past
returns; the edge lives in volume.

Example:

>>> universe = generate_universe(num_symbols=3, num_bars=50, seed=1)
>>> universe.panel.symbols
('SYN-00', 'SYN-01', 'SYN-02')
>>> float(universe.expected_return["SYN-00"].abs().max())
0.0
"""

import dataclasses

import numpy as np
import pandas as pd

from keras_synapse.data import planted, reference_series
from keras_synapse.data.panel import Panel
from keras_synapse.errors import ConfigError

# Daily standard deviations in the calm regime. Together with beta in
# [0.6, 1.4] they give ~1.5% a day per symbol and a pairwise correlation of
# ~0.3 across sectors and ~0.45 within one, in the range of large US stocks.
_MARKET_VOLATILITY = 0.009
_SECTOR_VOLATILITY = 0.006
_IDIOSYNCRATIC_VOLATILITY_RANGE = (0.008, 0.016)
_BETA_RANGE = (0.6, 1.4)
_START_PRICE_RANGE = (10.0, 200.0)
_BASE_VOLUME_RANGE = (1e5, 1e7)
# Share of a bar's return variance that arrives overnight, in the gap between
# the previous close and this open.
_OVERNIGHT_VARIANCE_SHARE = 0.2
# Standard deviation of log volume around its level: real daily log volume
# moves by ~0.3-0.4 from day to day.
_VOLUME_SURPRISE_SCALE = 0.35


@dataclasses.dataclass(frozen=True)
class SyntheticUniverse:
    """A generated panel with the truth about it.

    Attributes:
        panel: the bars, a `Panel` of symbols `SYN-00`, `SYN-01`, ... (valid by
            construction; every check of `validate_bars` passes).
        expected_return: symbol -> `pandas.Series` on the panel's index, the
            oracle: the planted part of the expected forward `horizon`-bar log
            return known at each bar (see the module docstring). All zeros
            when `signal_strength` is 0.
        regime: `pandas.Series` on the panel's index, 0 where the market is
            calm and 1 where it is turbulent.
        sector: symbol -> the sector number the symbol belongs to.
        references: symbol -> bars of the universe's reference series
            (`MARKET`, `SECTOR-0` ..., `VIX`, `VIX3M`; see
            `keras_synapse.data.reference_series`), for cross-asset features.
        signal: the planted kind (see `keras_synapse.data.planted`).
        signal_strength: the kind's coefficient (0: nothing planted).
        oracle_ic: the population correlation of the oracle with the
            realized forward `horizon`-bar return (0 when nothing is
            planted); a finite sample scatters around it.
    """

    panel: Panel
    expected_return: dict
    regime: pd.Series
    sector: dict
    references: dict = dataclasses.field(default_factory=dict)
    signal: str = "volume"
    signal_strength: float = 0.0
    oracle_ic: float = 0.0


def generate_universe(
    num_symbols=12,
    num_bars=2520,
    *,
    seed=0,
    signal="volume",
    signal_strength=0.0,
    oracle_ic=None,
    horizon=5,
    start="2005-01-03",
    freq="B",
    num_sectors=3,
    turbulent_volatility_ratio=2.0,
    calm_to_turbulent=0.01,
    turbulent_to_calm=0.04,
):
    """Generates a seeded synthetic OHLCV universe (see the module docstring).

    The same arguments always give the same bars. Each symbol draws from its
    own random streams, so `SYN-03` is the same series whether 4 or 400
    symbols are generated (with the same `num_sectors`), and the streams are
    consumed bar by bar, so the first `n` bars (and their `expected_return`)
    are the same for any `num_bars >= n`: nothing at a bar depends on later
    bars.

    Args:
        num_symbols: how many symbols to generate. Defaults to `12`.
        num_bars: how many bars per symbol. Defaults to `2520` (ten years of
            business days).
        seed: the random seed. Defaults to `0`.
        signal: the kind of planted edge, one of
            `keras_synapse.data.planted.SIGNAL_KINDS`. Defaults to
            `"volume"`.
        signal_strength: the kind's coefficient; for `volume`, `lambda`: a
            one-standard-deviation volume surprise moves the price by
            `lambda` one-bar standard deviations over the next `horizon`
            bars. `0` plants nothing. Defaults to `0.0`.
        oracle_ic: instead of `signal_strength`, the oracle's population IC
            at `horizon` (e.g. `0.05`, a published alpha's size); the
            coefficient is solved for this universe. Defaults to `None`.
        horizon: how many bars the planted drift of one surprise spans, and
            the horizon of `expected_return`. Defaults to `5`.
        start: the first timestamp; naive means UTC. Defaults to
            `"2005-01-03"`.
        freq: a pandas frequency alias for the bar spacing. Defaults to `"B"`
            (business days).
        num_sectors: how many sectors share a sector factor. Defaults to `3`.
        turbulent_volatility_ratio: how many times more volatile the
            turbulent regime is than the calm one. Defaults to `2.0`.
        calm_to_turbulent: the probability per bar that a calm market turns
            turbulent. Defaults to `0.01`.
        turbulent_to_calm: the probability per bar that a turbulent market
            calms down. Defaults to `0.04`.

    Returns:
        A `SyntheticUniverse`.

    Raises:
        ConfigError: for an argument out of range, e.g.
            "`num_symbols` must be >= 1. Received: num_symbols=0".
    """
    planted.check_kind(signal)
    if oracle_ic is not None and signal_strength:
        raise ConfigError(f"Give `signal_strength` or `oracle_ic`, not both. Received: signal_strength="
                          f"{signal_strength!r}, oracle_ic={oracle_ic!r}")
    _check_arguments(
        num_symbols=num_symbols,
        num_bars=num_bars,
        signal_strength=signal_strength,
        **({} if oracle_ic is None else {"oracle_ic": oracle_ic}),
        horizon=horizon,
        num_sectors=num_sectors,
        turbulent_volatility_ratio=turbulent_volatility_ratio,
        calm_to_turbulent=calm_to_turbulent,
        turbulent_to_calm=turbulent_to_calm,
    )
    try:
        index = pd.date_range(start=start, periods=num_bars, freq=freq, tz="UTC", name="timestamp")
    except (ValueError, TypeError) as error:
        raise ConfigError(
            f"`start` and `freq` must give a date range ({error}). Received: start={start!r}, freq={freq!r}"
        ) from None
    # Canonical bars carry no index frequency (validation drops it): keeping
    # one would make a validated copy compare unequal.
    index = pd.DatetimeIndex(index, freq=None)

    # Independent streams per component and per symbol: spawned children
    # depend only on their position, so adding symbols leaves existing ones
    # unchanged.
    regime_seed, market_seed, sector_seed, *symbol_seeds = np.random.SeedSequence(seed).spawn(3 + num_symbols)
    regime = _markov_regime(np.random.default_rng(regime_seed), num_bars, calm_to_turbulent, turbulent_to_calm)
    volatility_multiplier = np.where(regime == 1, float(turbulent_volatility_ratio), 1.0)[:, None]
    market_shocks = np.random.default_rng(market_seed).standard_normal(num_bars)
    sector_shocks = np.random.default_rng(sector_seed).standard_normal((num_bars, num_sectors))
    draws = _SymbolDraws.sample(symbol_seeds, num_bars)

    sector_of_symbol = np.arange(num_symbols) % num_sectors
    factor_part = (
        draws.beta * _MARKET_VOLATILITY * market_shocks[:, None]
        + _SECTOR_VOLATILITY * sector_shocks[:, sector_of_symbol]
        + draws.idiosyncratic_volatility * draws.idiosyncratic_shocks
    )
    calm_volatility = np.sqrt(
        (draws.beta * _MARKET_VOLATILITY) ** 2 + _SECTOR_VOLATILITY**2 + draws.idiosyncratic_volatility**2
    )
    volatility = volatility_multiplier * calm_volatility
    share = planted.dispersion_share(_noise_covariance(draws.beta, draws.idiosyncratic_volatility, sector_of_symbol))
    if oracle_ic is not None:
        signal_strength = planted.strength_for_oracle_ic(signal, oracle_ic, horizon, share)
    log_returns, expected_return = planted.plant_signal(
        signal, signal_strength, volatility_multiplier * factor_part, volatility, draws.volume_surprise, horizon)

    open_, high, low, close = _ohlc(log_returns, volatility, draws)
    log_volume = (
        draws.base_log_volume + np.log(volatility_multiplier) + _VOLUME_SURPRISE_SCALE * draws.volume_surprise
    )
    # Whole shares, as a venue reports them; never zero, so log volume exists.
    volume = np.maximum(np.round(np.exp(log_volume)), 1.0)

    symbols = [f"SYN-{position:02d}" for position in range(num_symbols)]
    frames = {
        symbol: pd.DataFrame(
            {
                "open": open_[:, position],
                "high": high[:, position],
                "low": low[:, position],
                "close": close[:, position],
                "volume": volume[:, position],
            },
            index=index,
        )
        for position, symbol in enumerate(symbols)
    }
    return SyntheticUniverse(
        # Valid by construction (float64 OHLCV, a sorted UTC index, high and
        # low bracketing open and close, positive prices); the tests validate
        # it, and skipping the checks here is most of the time for 500 symbols.
        panel=Panel(frames, validate=False),
        expected_return={
            symbol: pd.Series(expected_return[:, position], index=index, name="expected_return")
            for position, symbol in enumerate(symbols)
        },
        regime=pd.Series(regime, index=index, name="regime"),
        sector={symbol: int(sector_of_symbol[position]) for position, symbol in enumerate(symbols)},
        references=reference_series.reference_frames(
            index, volatility_multiplier[:, 0], _MARKET_VOLATILITY * market_shocks, _SECTOR_VOLATILITY * sector_shocks,
            _MARKET_VOLATILITY, (calm_to_turbulent, turbulent_to_calm, turbulent_volatility_ratio, regime), seed),
        signal=signal,
        signal_strength=float(signal_strength),
        oracle_ic=planted.population_oracle_ic(signal, signal_strength, horizon, share),
    )


def _noise_covariance(beta, idiosyncratic_volatility, sector_of_symbol):
    """One calm bar's covariance of the unpredictable returns across symbols."""
    same_sector = sector_of_symbol[:, None] == sector_of_symbol[None, :]
    return (np.outer(beta, beta) * _MARKET_VOLATILITY**2 + same_sector * _SECTOR_VOLATILITY**2
            + np.diag(idiosyncratic_volatility**2))


def oracle_correlation(signal_strength, horizon=5, *, window="forward"):
    """Returns the population correlation of the volume kind's oracle with a realized return.

    Exact for the generator's model in the long run (volatility regimes scale
    every term alike and cancel); a finite sample scatters around it. Other
    kinds: `keras_synapse.data.planted.population_oracle_ic`.

    Args:
        signal_strength: `lambda`, as in `generate_universe`.
        horizon: the horizon, as in `generate_universe`. Defaults to `5`.
        window: `"forward"` for the realized log return over bars
            `t+1 .. t+horizon` (what a perfect model of the edge scores), or
            `"past"` for the one over bars `t-horizon+1 .. t`. Defaults to
            `"forward"`.

    Returns:
        The correlation, a float in [0, 1).

    Raises:
        ConfigError: for a negative `signal_strength`, `horizon` < 1 or an
            unknown `window`.
    """
    _check_arguments(signal_strength=signal_strength, horizon=horizon)
    if window not in ("forward", "past"):
        raise ConfigError(f"`window` must be 'forward' or 'past'. Received: window={window!r}")
    return planted.population_oracle_ic("volume", signal_strength, horizon, window=window)


def _check_arguments(**arguments):
    def require(condition, name, requirement):
        if not condition:
            raise ConfigError(f"`{name}` must be {requirement}. Received: {name}={arguments[name]!r}")

    def is_integer(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    def is_number(value):
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)

    for name in ("num_symbols", "num_bars", "horizon", "num_sectors"):
        if name in arguments:
            require(is_integer(arguments[name]), name, "an integer")
            require(arguments[name] >= 1, name, ">= 1")
    for name in ("signal_strength", "oracle_ic"):
        if name in arguments:
            value = arguments[name]
            require(is_number(value) and np.isfinite(value), name, "a finite number")
            require(value >= 0, name, ">= 0")
    if "turbulent_volatility_ratio" in arguments:
        value = arguments["turbulent_volatility_ratio"]
        require(is_number(value) and np.isfinite(value), "turbulent_volatility_ratio", "a finite number")
        require(value >= 1, "turbulent_volatility_ratio", ">= 1")
    for name in ("calm_to_turbulent", "turbulent_to_calm"):
        if name in arguments:
            value = arguments[name]
            require(is_number(value) and 0 < value <= 1, name, "a probability in (0, 1]")


def _markov_regime(generator, num_bars, calm_to_turbulent, turbulent_to_calm):
    """Samples the two-state chain as alternating geometric spells, no loop."""
    turbulent_share = calm_to_turbulent / (calm_to_turbulent + turbulent_to_calm)
    first_state = int(generator.random() < turbulent_share)
    # A spell in a state lasts a geometric number of bars (the chain is
    # memoryless, so this also holds for the first spell drawn from the
    # stationary distribution). Every spell lasts >= 1 bar, so num_bars
    # spells always cover the sample.
    states = (np.arange(num_bars) + first_state) % 2
    spell_lengths = generator.geometric(np.where(states == 0, calm_to_turbulent, turbulent_to_calm))
    num_spells = int(np.searchsorted(np.cumsum(spell_lengths), num_bars)) + 1
    return np.repeat(states[:num_spells], spell_lengths[:num_spells])[:num_bars].astype(np.int8)


@dataclasses.dataclass(frozen=True)
class _SymbolDraws:
    """Per-symbol parameters (shape (num_symbols,)) and shocks (num_bars, num_symbols)."""

    beta: np.ndarray
    idiosyncratic_volatility: np.ndarray
    start_price: np.ndarray
    base_log_volume: np.ndarray
    idiosyncratic_shocks: np.ndarray
    volume_surprise: np.ndarray
    gap_shocks: np.ndarray
    high_uniform: np.ndarray
    low_uniform: np.ndarray

    @classmethod
    def sample(cls, symbol_seeds, num_bars):
        columns = {field.name: [] for field in dataclasses.fields(cls)}
        for symbol_seed in symbol_seeds:
            # Parameters, normals and uniforms from separate streams, each
            # filled bar by bar: the first n bars are then the same for any
            # num_bars >= n, which is what lets a test prove that nothing at
            # bar t depends on later bars.
            parameter_seed, normal_seed, uniform_seed = symbol_seed.spawn(3)
            parameters = np.random.default_rng(parameter_seed)
            columns["beta"].append(parameters.uniform(*_BETA_RANGE))
            columns["idiosyncratic_volatility"].append(parameters.uniform(*_IDIOSYNCRATIC_VOLATILITY_RANGE))
            columns["start_price"].append(np.exp(parameters.uniform(*np.log(_START_PRICE_RANGE))))
            columns["base_log_volume"].append(parameters.uniform(*np.log(_BASE_VOLUME_RANGE)))
            normals = np.random.default_rng(normal_seed).standard_normal((num_bars, 3))
            columns["idiosyncratic_shocks"].append(normals[:, 0])
            columns["volume_surprise"].append(normals[:, 1])
            columns["gap_shocks"].append(normals[:, 2])
            # 1 - U lies in (0, 1], so its logarithm is finite.
            uniforms = 1.0 - np.random.default_rng(uniform_seed).random((num_bars, 2))
            columns["high_uniform"].append(uniforms[:, 0])
            columns["low_uniform"].append(uniforms[:, 1])
        return cls(
            **{
                name: np.stack(values, axis=-1) if np.ndim(values[0]) else np.asarray(values)
                for name, values in columns.items()
            }
        )


def _ohlc(log_returns, volatility, draws):
    log_close = np.log(draws.start_price) + np.cumsum(log_returns, axis=0)
    previous_log_close = np.vstack([np.log(draws.start_price)[None, :], log_close[:-1]])
    # gap = w r + sqrt(w (1 - w)) sigma z is uncorrelated with r - gap and has
    # variance w sigma^2: the two pieces of a Brownian path at time w.
    share = _OVERNIGHT_VARIANCE_SHARE
    gap = share * log_returns + np.sqrt(share * (1 - share)) * volatility * draws.gap_shocks
    log_open = previous_log_close + gap
    intraday = log_close - log_open
    intraday_variance = (1 - share) * volatility**2
    # Inverse CDF of the maximum (minimum) of a Brownian bridge from 0 to
    # `intraday`: P(max > m) = exp(-2 m (m - x) / s^2) for m >= max(0, x).
    up = 0.5 * (intraday + np.sqrt(intraday**2 - 2 * intraday_variance * np.log(draws.high_uniform)))
    down = 0.5 * (intraday - np.sqrt(intraday**2 - 2 * intraday_variance * np.log(draws.low_uniform)))
    open_ = np.exp(log_open)
    close = np.exp(log_close)
    # The bridge extremes bracket open and close exactly; the max/min only
    # absorbs float rounding in exp.
    high = np.maximum(np.exp(log_open + up), np.maximum(open_, close))
    low = np.minimum(np.exp(log_open + down), np.minimum(open_, close))
    return open_, high, low, close
