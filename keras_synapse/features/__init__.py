"""Named feature sets: Panel -> per-symbol feature frames, past bars only.

A feature set is a function of one symbol's bars plus its warm-up (the bars of
history it needs). Rows inside the warm-up are dropped, never filled.
"""

import dataclasses
from collections.abc import Callable

import pandas as pd

from keras_synapse.errors import ConfigError
from keras_synapse.features.core import CORE_WARMUP, core_features


@dataclasses.dataclass(frozen=True)
class FeatureSet:
    """A named feature function and the bars of history it needs."""

    name: str
    compute: Callable[[pd.DataFrame], pd.DataFrame]
    warmup: int


FEATURE_SETS = {
    "core": FeatureSet("core", core_features, CORE_WARMUP),
}


def get_feature_set(name):
    """Returns the `FeatureSet` registered as `name`.

    Raises:
        ConfigError: for an unknown name, listing the known ones.
    """
    if name not in FEATURE_SETS:
        raise ConfigError(f"Unknown feature set {name!r}. Known: {', '.join(FEATURE_SETS)}")
    return FEATURE_SETS[name]


def compute_features(panel, name):
    """Computes feature set `name` for every symbol of `panel`.

    Args:
        panel: a `Panel`.
        name: a registered feature set name.

    Returns:
        A dict symbol -> float64 frame indexed like the symbol's bars, with the
        warm-up rows dropped.
    """
    feature_set = get_feature_set(name)
    return {
        symbol: feature_set.compute(bars).iloc[feature_set.warmup - 1 :]
        for symbol, bars in panel.items()
    }
