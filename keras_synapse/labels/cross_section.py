"""Cross-sectional label normalization: each date's targets ranked or z-scored across the symbols of that date.

The standard equity-research target (Qlib's `CSRankNorm`, `CSZScoreNorm`):
what a stock does relative to the others on the same date, not the
market's move that day, which no stock-level signal can predict. Each date
is normalized with that date's labels only, so no other date, earlier or
later, enters a target. The raw forward return stays beside it for
evaluation and the backtest, so ICs and books still use realized returns.
"""

import dataclasses

import numpy as np
import pandas as pd

from keras_synapse.labels.common import require, require_choice

CROSS_SECTIONS = ("none", "rank", "zscore")
# Fewer symbols with a label on a date give no cross-section: that date's targets are unknown.
MIN_SYMBOLS = 3


def cross_sectional_labels(labels, how):
    """Labels whose targets are normalized across symbols per date.

    Args:
        labels: dict symbol -> regression `Label`.
        how: `"none"` (unchanged), `"rank"` (each date's percentile ranks,
            centred: from -0.5 to +0.5, ties averaged) or `"zscore"` (each
            date's values minus their mean, over their standard deviation).

    Returns:
        A dict symbol -> `Label` with the new `values`; a target is unknown
        (NaN, its end time NaT) on dates with fewer than 3 labelled symbols.

    Raises:
        ConfigError: for another `how`, or a class label.
    """
    require_choice("label_cross_section", how, CROSS_SECTIONS)
    if how == "none":
        return labels
    kinds = {label.kind for label in labels.values()}
    require(kinds == {"regression"}, "label_cross_section", how,
            f"'none' for this label: it normalizes regression targets, and the label is {sorted(kinds)}")
    table = pd.DataFrame({symbol: label.values for symbol, label in labels.items()})
    counts = table.notna().sum(axis=1)
    if how == "rank":
        normalized = table.rank(axis=1, pct=True).sub(0.5 + 0.5 / counts, axis=0)
    else:
        deviation = table.std(axis=1, ddof=0)
        normalized = table.sub(table.mean(axis=1), axis=0).div(deviation.where(deviation > 0), axis=0)
    normalized = normalized.where(counts >= MIN_SYMBOLS, axis=0)
    result = {}
    for symbol, label in labels.items():
        values = normalized[symbol].reindex(label.values.index)
        end_time = label.end_time.where(values.notna())
        result[symbol] = dataclasses.replace(label, values=values.astype(np.float64), end_time=end_time)
    return result
