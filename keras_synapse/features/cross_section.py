"""Cross-sectional features: each date's symbols against each other.

Equity research compares a stock with its universe on the same day: a return
above the day's average, volume unusual for the day. Two steps, both fitted on
one date's values alone, so nothing from another date (and no later bar)
enters:

- `add_universe_features`: `<feature>_vs_universe` columns, the feature
  minus that date's mean over the symbols with a row that date (for the
  bases of `UNIVERSE_BASES` the feature set has).
- `normalize_cross_section`: every column replaced by its rank across that
  date's symbols (scaled to [-1, 1], ties averaged; Qlib's CSRankNorm) or its
  z-score. A date held by fewer than `MIN_SYMBOLS` symbols has no cross
  section: its values are 0, the neutral rank.

A model on such inputs needs the universe to score a symbol: `predict` on a
panel computes them, `serve` and the stream, which score one symbol at a
time, refuse such a model.

Example:

```python
frames = add_universe_features(compute_features(panel, "core"))
frames = normalize_cross_section(frames, "rank")
```
"""

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError

FEATURE_CROSS_SECTIONS = ("", "rank", "zscore")
UNIVERSE_BASES = ("log_return_1", "log_return_20", "volume_zscore_20")
MIN_SYMBOLS = 3
SUFFIX = "_vs_universe"


def _wide(frames, column):
    """`[dates, symbols]` of one column, NaN where a symbol has no row that date."""
    return pd.concat({symbol: frame[column] for symbol, frame in frames.items()}, axis=1)


def _require_universe(frames, what):
    if len(frames) < MIN_SYMBOLS:
        raise ConfigError(f"`{what}` compares each date's symbols and needs at least {MIN_SYMBOLS}. Received: "
                          f"{len(frames)} symbol(s) ({', '.join(frames)})")


def add_universe_features(frames):
    """Each frame with `<base>_vs_universe` columns: the base minus that date's mean over the symbols.

    Args:
        frames: dict symbol -> feature frame (the columns of one feature set).

    Returns:
        A new dict of frames, the added columns last.

    Raises:
        ConfigError: for fewer than `MIN_SYMBOLS` symbols, or a feature set
            holding none of `UNIVERSE_BASES`.
    """
    _require_universe(frames, "universe_features")
    columns = next(iter(frames.values())).columns
    bases = [base for base in UNIVERSE_BASES if base in columns]
    if not bases:
        raise ConfigError(f"`universe_features` compares {', '.join(UNIVERSE_BASES)} with the universe, and the "
                          f"feature set has none of them. Received columns: {list(columns)}")
    means = {base: _wide(frames, base).mean(axis=1) for base in bases}
    return {symbol: frame.assign(**{f"{base}{SUFFIX}": frame[base] - means[base].reindex(frame.index)
                                    for base in bases})
            for symbol, frame in frames.items()}


def normalize_cross_section(frames, how):
    """Every column ranked (`"rank"`, in [-1, 1]) or z-scored (`"zscore"`) across each date's symbols.

    Args:
        frames: dict symbol -> feature frame, the same columns each.
        how: one of `FEATURE_CROSS_SECTIONS`; `""` returns `frames` as they are.

    Returns:
        A new dict of frames, or `frames`.

    Raises:
        ConfigError: for an unknown `how` or fewer than `MIN_SYMBOLS` symbols.
    """
    if how not in FEATURE_CROSS_SECTIONS:
        raise ConfigError(f"`feature_cross_section` must be one of {FEATURE_CROSS_SECTIONS}. Received: {how!r}")
    if not how:
        return frames
    _require_universe(frames, "feature_cross_section")
    columns = next(iter(frames.values())).columns
    normalized = {}
    for column in columns:
        wide = _wide(frames, column)
        present = wide.notna().to_numpy()
        count = present.sum(axis=1, keepdims=True)
        if how == "rank":
            values = (wide.rank(axis=1).to_numpy() - 1) / np.maximum(count - 1, 1) * 2 - 1
        else:
            spread = wide.std(axis=1, ddof=0).to_numpy()[:, None]
            centred = wide.to_numpy() - wide.mean(axis=1).to_numpy()[:, None]
            values = np.where(spread > 0, centred / np.where(spread > 0, spread, 1.0), 0.0)
        # Too few symbols that date for a cross section: the neutral 0 (NaN stays NaN: no row there).
        values = np.where(present & (count < MIN_SYMBOLS), 0.0, values)
        normalized[column] = pd.DataFrame(np.where(present, values, np.nan), index=wide.index, columns=wide.columns)
    return {symbol: pd.DataFrame({column: normalized[column][symbol].reindex(frame.index) for column in columns},
                                 index=frame.index).astype(np.float64)
            for symbol, frame in frames.items()}


def cross_sectional_inputs(frames, universe_features, feature_cross_section):
    """Both steps as the config asks: universe columns first, then the normalization (of every column)."""
    if universe_features:
        frames = add_universe_features(frames)
    return normalize_cross_section(frames, feature_cross_section)
