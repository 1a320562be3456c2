"""The 17 pattern features of the LSTM pattern detector, past bars only.

Five groups, in this column order (`r_t` is the log close-to-close return of
bar t, `lc_t` the log close, `std_n`, `mean_n`, `corr_n` trailing n-bar
statistics that include bar t):

Non-linear price:
    `price_acceleration_5`: lc_t - 2 lc_{t-5} + lc_{t-10}, the second
        difference of log price at a 5-bar step (today's 5-bar return minus
        the previous 5-bar return).
    `volume_price_divergence_20`: -corr_20(r_t, d_t), d_t the change in
        log(1 + volume); positive when price and volume move apart (price up
        on falling volume, down on rising volume). 0 when either has no
        variance in the window (e.g. an index reporting constant volume).
    `volatility_regime_change_10_60`: log(std_10(r) / std_60(r)); > 0 when the
        last 10 bars are more volatile than the last 60.
    `return_skewness_20`: the adjusted Fisher-Pearson sample skewness
        (`pandas` rolling skew, as `scipy.stats.skew(bias=False)`) of the last
        20 returns. 0 for a window with no variance.

Temporal dependencies:
    `momentum_persistence_7`: the fraction of the last 7 returns
        r_{t-6..t} whose sign equals the sign of the 7-bar log return
        lc_t - lc_{t-7}, in [0, 1] (zero returns have sign 0).
    `volatility_clustering_60`: corr_60(|r_t|, |r_{t-1}|), the lag-1
        autocorrelation of absolute returns over the last 60 pairs. 0 when
        either side has no variance.
    `trend_exhaustion_20`: (lc_t - mean_20(lc)) / std_20(r), how many one-bar
        standard deviations the close is stretched from its 20-bar mean.
        0 when std_20(r) is 0.
    `garch_volatility_ratio_20`: log(sigma_{t+1} / std_20(r)), sigma_{t+1}
        the GARCH(1,1) forecast of `garch_volatility_forecast` (fitted on
        past bars only, refit every 252 bars); > 0 when GARCH expects more
        volatility than the last 20 bars showed.

Market microstructure (daily-bar proxies):
    `range_expansion_20`: log(g_t / mean(g_{t-20..t-1})), g = log(high / low),
        today's range against the mean range of the 20 bars before it.
    `overnight_gap`: log(open_t / close_{t-1}) (as in the core set).
    `end_of_day_momentum`: (2 close - high - low) / (high - low) in [-1, 1],
        where the close settled within the bar's range: +1 at the high, -1 at
        the low, 0 when high == low. On daily bars it stands in for the
        last-hour momentum that intraday data would measure.

Cross-asset (need the `market`, `sector`, `vix` and `vix3m` references):
    `sector_relative_strength_20`: (lc_t - lc_{t-20}) - (ls_t - ls_{t-20}),
        ls the log close of the sector reference aligned to the symbol's bars.
    `market_beta_instability_20_60`: std_60(beta_20), beta_20 =
        cov_20(r, m) / var_20(m) with m the aligned market's log returns: how
        much the one-month beta wandered over the last 60 bars. NaN where the
        market shows no variance over 20 bars (a stale reference).
    `vix_term_structure`: log(VIX3M_t / VIX_t) of the aligned closes; > 0 in
        contango (calm), < 0 in backwardation (stress).

Core context:
    `multi_timeframe_return`: (R_5 / sqrt(5) + R_20 / sqrt(20) +
        R_60 / sqrt(60)) / 3 with R_k = lc_t - lc_{t-k}: a blend of three
        horizons, each scaled so a random walk gives each term equal variance.
    `volume_zscore_20`: log volume against its 20-bar mean and std (as in the
        core set).
    `price_range_position_252`: (lc_t - min_252(lc)) / (max_252(lc) -
        min_252(lc)) in [0, 1], where the close sits in its one-year range;
        0.5 when the range is empty.

Log ratios (`volatility_regime_change_10_60`, `garch_volatility_ratio_20`,
`range_expansion_20`) clip the ratio to [0.01, 100] and read 0 / 0 as 1, so a
halted symbol (unchanged closes, high == low) stays finite.

A reference is aligned to the symbol's timestamps by taking, at each
timestamp t, its last close at or before t (forward fill from the past, never
backward): a reference bar after t never reaches row t, and a reference
missing a day repeats its previous close.
"""

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError
from keras_synapse.features.core import core_features
from keras_synapse.features.garch import GARCH_WARMUP, garch_volatility_forecast

PATTERN_REFERENCES = ("market", "sector", "vix", "vix3m")

SINGLE_ASSET_PATTERN_COLUMNS = (
    # Non-linear price.
    "price_acceleration_5",
    "volume_price_divergence_20",
    "volatility_regime_change_10_60",
    "return_skewness_20",
    # Temporal dependencies.
    "momentum_persistence_7",
    "volatility_clustering_60",
    "trend_exhaustion_20",
    "garch_volatility_ratio_20",
    # Market microstructure.
    "range_expansion_20",
    "overnight_gap",
    "end_of_day_momentum",
    # Core context.
    "multi_timeframe_return",
    "volume_zscore_20",
    "price_range_position_252",
)
CROSS_ASSET_PATTERN_COLUMNS = (
    "sector_relative_strength_20",
    "market_beta_instability_20_60",
    "vix_term_structure",
)
# The seed's group order: cross-asset sits between microstructure and context.
PATTERN_COLUMNS = SINGLE_ASSET_PATTERN_COLUMNS[:11] + CROSS_ASSET_PATTERN_COLUMNS + SINGLE_ASSET_PATTERN_COLUMNS[11:]

PRICE_LEVEL_WINDOW = 252
# The GARCH forecast needs 252 returns (first value at bar 252, the 253rd
# bar); every other feature is valid earlier (the 252-bar price range at bar
# 251, the beta instability at bar 79), so the GARCH fit sets the warm-up.
SINGLE_ASSET_PATTERN_WARMUP = max(GARCH_WARMUP, PRICE_LEVEL_WINDOW)
# With references that cover the symbol's first bar, the cross-asset features
# are valid from bar 79 at the latest: the same warm-up.
PATTERN_WARMUP = SINGLE_ASSET_PATTERN_WARMUP

_LOG_RATIO_BOUND = 100.0


def single_asset_pattern_features(bars, references=None):
    """Computes the 14 pattern features that need no reference series (`pattern14`).

    The 17 pattern features less the three cross-asset ones; see the module
    docstring for each column's formula and window.

    Args:
        bars: one symbol's canonical OHLCV frame (see `Panel`).
        references: ignored; accepted so the function fits
            `FeatureSet.compute(bars, references)`. Defaults to `None`.

    Returns:
        A float64 frame on `bars.index` with the columns
        `SINGLE_ASSET_PATTERN_COLUMNS`; the first
        `SINGLE_ASSET_PATTERN_WARMUP - 1` rows hold NaN (warm-up) and every
        later row is finite.
    """
    del references  # Single-asset by definition.
    columns = _single_asset_columns(bars)
    return pd.DataFrame({name: columns[name] for name in SINGLE_ASSET_PATTERN_COLUMNS}, index=bars.index)


def pattern_features(bars, references):
    """Computes the 17 pattern features of one symbol's bars (`pattern17`).

    See the module docstring for each column's formula and window. Every
    value at bar t uses the symbol's bars and the references' bars at or
    before t only.

    Args:
        bars: one symbol's canonical OHLCV frame (see `Panel`).
        references: dict role -> canonical bars, with at least the roles of
            `PATTERN_REFERENCES` (`market`, `sector`, `vix`, `vix3m`); only
            their `close` is used.

    Returns:
        A float64 frame on `bars.index` with the columns `PATTERN_COLUMNS`;
        the first `PATTERN_WARMUP - 1` rows hold NaN (warm-up). Later rows
        are finite as long as every reference has a bar at or before the
        symbol's first bar.

    Raises:
        ConfigError: when a reference role is missing, naming it.
    """
    references = references or {}
    missing = [role for role in PATTERN_REFERENCES if role not in references]
    if missing:
        raise ConfigError(
            f"pattern_features needs reference series for the roles {list(PATTERN_REFERENCES)}; "
            f"missing: {missing}. Received roles: {sorted(references)}. "
            "Use single_asset_pattern_features (feature set 'pattern14') without references."
        )
    columns = _single_asset_columns(bars)
    columns.update(_cross_asset_columns(bars, references))
    return pd.DataFrame({name: columns[name] for name in PATTERN_COLUMNS}, index=bars.index)


def _single_asset_columns(bars):
    close = bars["close"]
    log_close = np.log(close)
    log_return = log_close.diff()
    volatility_20 = log_return.rolling(20).std()
    core = core_features(bars)

    log_volume_change = np.log1p(bars["volume"]).diff()
    # The momentum sign is compared with each of the last 7 returns' signs.
    return_7 = log_close.diff(7)
    momentum_sign = np.sign(return_7)
    same_sign_count = sum((np.sign(log_return.shift(lag)) == momentum_sign).astype(np.float64) for lag in range(7))

    mean_log_close_20 = log_close.rolling(20).mean()
    stretch = (log_close - mean_log_close_20) / volatility_20.where(volatility_20 > 0)

    log_range = np.log(bars["high"] / bars["low"])
    bar_range = bars["high"] - bars["low"]
    close_location = (2 * close - bars["high"] - bars["low"]) / bar_range.where(bar_range > 0)

    rolling_low = log_close.rolling(PRICE_LEVEL_WINDOW).min()
    rolling_high = log_close.rolling(PRICE_LEVEL_WINDOW).max()
    span = rolling_high - rolling_low
    range_position = (log_close - rolling_low) / span.where(span > 0)

    garch_forecast = garch_volatility_forecast(bars)

    return {
        "price_acceleration_5": log_close - 2 * log_close.shift(5) + log_close.shift(10),
        "volume_price_divergence_20": -_rolling_correlation(log_return, log_volume_change, 20),
        "volatility_regime_change_10_60": _log_ratio(log_return.rolling(10).std(), log_return.rolling(60).std()),
        "return_skewness_20": _filled_where_flat(log_return.rolling(20).skew(), volatility_20, 0.0),
        "momentum_persistence_7": (same_sign_count / 7).where(return_7.notna()),
        "volatility_clustering_60": _rolling_correlation(log_return.abs(), log_return.abs().shift(1), 60),
        "trend_exhaustion_20": _filled_where_flat(stretch, volatility_20, 0.0),
        "garch_volatility_ratio_20": _log_ratio(garch_forecast, volatility_20),
        "range_expansion_20": _log_ratio(log_range, log_range.shift(1).rolling(20).mean()),
        "overnight_gap": core["overnight_gap"],
        "end_of_day_momentum": close_location.where(bar_range > 0, 0.0),
        "multi_timeframe_return": sum(log_close.diff(horizon) / np.sqrt(horizon) for horizon in (5, 20, 60)) / 3,
        "volume_zscore_20": core["volume_zscore_20"],
        "price_range_position_252": range_position.where(span > 0, 0.5).where(span.notna()),
    }


def _cross_asset_columns(bars, references):
    log_close = np.log(bars["close"])
    log_return = log_close.diff()
    log_sector = np.log(_aligned_close(references["sector"], bars.index))
    market_return = np.log(_aligned_close(references["market"], bars.index)).diff()

    market_variance = market_return.rolling(20).var()
    beta_20 = log_return.rolling(20).cov(market_return) / market_variance.where(market_variance > 0)

    vix = _aligned_close(references["vix"], bars.index)
    vix_3_month = _aligned_close(references["vix3m"], bars.index)
    return {
        "sector_relative_strength_20": log_close.diff(20) - log_sector.diff(20),
        "market_beta_instability_20_60": beta_20.rolling(60).std(),
        "vix_term_structure": np.log(vix_3_month / vix),
    }


def _aligned_close(reference_bars, index):
    """The reference's last close at or before each timestamp of `index` (NaN before its first bar)."""
    return reference_bars["close"].astype(np.float64).reindex(index, method="ffill")


def _rolling_correlation(left, right, window):
    """Trailing Pearson correlation; 0 where either side is flat, NaN in the warm-up."""
    correlation = left.rolling(window).corr(right)
    left_std = left.where(right.notna()).rolling(window).std()
    right_std = right.where(left.notna()).rolling(window).std()
    flat = (left_std == 0) | (right_std == 0)
    return correlation.where(~flat, 0.0).where(left_std.notna() & right_std.notna())


def _filled_where_flat(values, volatility, fill_value):
    """`values`, with `fill_value` where `volatility` is 0 and NaN where it is unknown."""
    return values.where(volatility != 0, fill_value).where(volatility.notna())


def _log_ratio(numerator, denominator):
    """log(numerator / denominator) with the ratio clipped to [1/100, 100] and 0 / 0 read as 1."""
    ratio = (numerator / denominator).where(~((numerator == 0) & (denominator == 0)), 1.0)
    ratio = ratio.where(numerator.notna() & denominator.notna())
    return np.log(ratio.clip(1 / _LOG_RATIO_BOUND, _LOG_RATIO_BOUND))
