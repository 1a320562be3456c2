"""A/B of books traded on the same dates: paired stationary-bootstrap intervals of their Sharpe differences.

"The filter helps" is a claim about a difference of two Sharpe ratios
measured on the same periods, whose returns are correlated with each other
and over time. Each resample draws the same blocks of periods for every book
(a stationary bootstrap, Politis and Romano, with the Politis-White block
length of the first pair's difference, as `arch.bootstrap` does), so the
interval of the difference keeps their correlation. A pair is `better` only
when its whole 95% interval lies above zero.

Example:

```python
returns = pd.DataFrame({"model_filtered": ..., "rsi_reversion": ...})   # net period returns
ab = sharpe_differences(returns, [("model_filtered", "rsi_reversion")], periods_per_year=50.4)
ab["model_filtered - rsi_reversion"]["ci_low"]
```
"""

import numpy as np

from keras_synapse.errors import ConfigError
from keras_synapse.evaluation.intervals import politis_white_block_length, stationary_resample_counts


def annualized_sharpe(returns, periods_per_year):
    """Mean over sample standard deviation of each column, times `sqrt(periods_per_year)` (NaN when flat)."""
    returns = np.asarray(returns, dtype=np.float64)
    deviation = returns.std(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(deviation > 0, returns.mean(axis=0) / deviation, np.nan) * np.sqrt(periods_per_year)


def sharpe_differences(returns, pairs, periods_per_year, num_resamples=1000, seed=0, level=0.95, block_length=None):
    """Each pair's Sharpe difference `a - b` with its paired bootstrap interval.

    Args:
        returns: a frame of net period returns, one column per book, rows the
            shared periods.
        pairs: `(a, b)` column pairs.
        periods_per_year: for annualizing.
        num_resamples: bootstrap resamples. Defaults to `1000`.
        seed: the resampling seed. Defaults to `0`.
        level: the interval's coverage. Defaults to `0.95`.
        block_length: the mean block length in periods; defaults to `None`,
            the Politis-White length of the first pair's return difference.

    Returns:
        A dict `"a - b"` -> `{"a", "b", "sharpe_a", "sharpe_b", "difference",
        "ci_low", "ci_high", "better", "block_length"}`.

    Raises:
        ConfigError: for an unknown column or fewer than 10 periods.
    """
    unknown = sorted({name for pair in pairs for name in pair} - set(returns.columns))
    if unknown:
        raise ConfigError(f"`pairs` name books without returns: {unknown}. Books: {list(returns.columns)}")
    if len(returns) < 10:
        raise ConfigError(f"A Sharpe difference needs at least 10 periods. Received: {len(returns)}")
    values = returns.to_numpy(dtype=np.float64)
    if block_length is None:
        first, second = pairs[0]
        block_length = politis_white_block_length(returns[first].to_numpy() - returns[second].to_numpy())
    counts = stationary_resample_counts(len(values), block_length, num_resamples, np.random.default_rng(seed))
    # Weighted moments: a resample's mean and sample variance from how often it drew each period.
    total = counts.sum(axis=1, keepdims=True)
    means = counts @ values / total
    squares = counts @ values**2 / total
    deviation = np.sqrt(np.maximum(squares - means**2, 0.0) * total / (total - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = np.where(deviation > 0, means / deviation, np.nan) * np.sqrt(periods_per_year)
    point = annualized_sharpe(values, periods_per_year)
    column = {name: index for index, name in enumerate(returns.columns)}
    tail = (1 - level) / 2 * 100
    results = {}
    for first, second in pairs:
        difference = draws[:, column[first]] - draws[:, column[second]]
        low, high = np.nanpercentile(difference, [tail, 100 - tail]) if np.isfinite(difference).any() else (
            np.nan, np.nan)
        value = float(point[column[first]] - point[column[second]])
        results[f"{first} - {second}"] = {"a": first, "b": second, "sharpe_a": float(point[column[first]]),
                                          "sharpe_b": float(point[column[second]]), "difference": value,
                                          "ci_low": float(low), "ci_high": float(high), "better": bool(low > 0),
                                          "block_length": float(block_length)}
    return results
