"""Named feature sets: Panel -> per-symbol feature frames, past bars only.

A feature set is a function of one symbol's bars (and, for cross-asset sets,
of named reference series such as the market index) plus its warm-up: the
bars of history it needs. Rows inside the warm-up are dropped, never filled.
Sets combine with `+`, e.g. `"core+technical"`.
"""

import dataclasses
from collections.abc import Callable

import pandas as pd

from keras_synapse.errors import ConfigError
from keras_synapse.features.core import CLOSE_DEFINITIONS, CORE_DEFINITIONS, CORE_WARMUP, close_features, core_features
from keras_synapse.features.multiscale import MULTISCALE_WARMUP, multiscale_features
from keras_synapse.features.pattern import (
    PATTERN_REFERENCES,
    PATTERN_WARMUP,
    SINGLE_ASSET_PATTERN_WARMUP,
    pattern_features,
    single_asset_pattern_features,
)
from keras_synapse.features.raw_ohlcv import RAW_OHLCV_WARMUP, raw_ohlcv_features
from keras_synapse.features.references import resolve_references
from keras_synapse.features.technical import TECHNICAL_WARMUP, technical_features


@dataclasses.dataclass(frozen=True)
class FeatureSet:
    """A named feature function, the bars of history it needs, and its references.

    Attributes:
        name: the registry name.
        compute: `compute(bars, references)` -> a float64 frame on `bars.index`
            whose value at t uses bars at or before t only; `references` maps
            each role in `references` to that series' canonical bars.
        warmup: bars of history needed before the first valid row.
        references: roles (keys of `keras_synapse.features.references.REFERENCE_ROLES`) the set needs.
        definitions: feature name -> its definition (`kind`, parameters and
            `formula`), stated in the model card so an app without
            keras_synapse can rebuild the inputs; empty for sets too
            involved to restate (TA-Lib's, GARCH).
        stackable: the value at t is a function of a fixed number of trailing
            bars (rolling windows, differences, shifts), so computing it on
            many symbols' buffers laid end to end gives, for each symbol's
            last rows, exactly its own values: streaming inference computes
            all symbols in one call. `tests/serving/test_inference.py`
            checks it for each stackable set.
        history_dependent: the values depend on all the history given (a
            GARCH model refitted on it), so a streaming buffer gives
            different values from the full history (up to 0.05 on a 0.13
            volatility ratio with the default buffer, on the sample).
        columns: the bar columns the set reads; only sets that read `close`
            alone run on close-only data.
    """

    name: str
    compute: Callable[[pd.DataFrame, dict], pd.DataFrame]
    warmup: int
    references: tuple = ()
    definitions: dict = dataclasses.field(default_factory=dict)
    stackable: bool = False
    history_dependent: bool = False
    columns: tuple = ("open", "high", "low", "close", "volume")


FEATURE_SETS = {
    "core": FeatureSet("core", lambda bars, references: core_features(bars), CORE_WARMUP,
                       definitions=CORE_DEFINITIONS, stackable=True),
    # For closes without open, high, low and volume (the commonest free data).
    "close": FeatureSet("close", lambda bars, references: close_features(bars), CORE_WARMUP,
                        definitions=CLOSE_DEFINITIONS, stackable=True, columns=("close",)),
    # TA-Lib's exponentially smoothed indicators remember their first bar, so they do not stack.
    "technical": FeatureSet("technical", technical_features, TECHNICAL_WARMUP),
    "multiscale": FeatureSet("multiscale", multiscale_features, MULTISCALE_WARMUP, stackable=True),
    "raw_ohlcv": FeatureSet("raw_ohlcv", raw_ohlcv_features, RAW_OHLCV_WARMUP, stackable=True),
    # Seed 004's 17 pattern features need market, sector and VIX/VIX3M series;
    # pattern14 is the declared subset that needs none of them.
    "pattern17": FeatureSet("pattern17", pattern_features, PATTERN_WARMUP, PATTERN_REFERENCES,
                            history_dependent=True),
    "pattern14": FeatureSet("pattern14", single_asset_pattern_features, SINGLE_ASSET_PATTERN_WARMUP,
                            history_dependent=True),
}


def get_feature_set(name):
    """Returns the `FeatureSet` named `name`; `"a+b"` is the union of `a` and `b`.

    Raises:
        ConfigError: for an unknown name, listing the known ones.
    """
    parts = [part.strip() for part in str(name).split("+")]
    unknown = [part for part in parts if part not in FEATURE_SETS]
    if unknown:
        raise ConfigError(f"Unknown feature set(s) {unknown}. Known: {', '.join(FEATURE_SETS)} (combine with '+').")
    if len(parts) == 1:
        return FEATURE_SETS[parts[0]]
    members = [FEATURE_SETS[part] for part in dict.fromkeys(parts)]

    def compute(bars, references):
        frames = [member.compute(bars, references) for member in members]
        return pd.concat(frames, axis=1).loc[:, lambda frame: ~frame.columns.duplicated()]

    return FeatureSet(
        name="+".join(member.name for member in members),
        compute=compute,
        warmup=max(member.warmup for member in members),
        references=tuple(dict.fromkeys(role for member in members for role in member.references)),
        definitions={name: definition for member in members for name, definition in member.definitions.items()},
        stackable=all(member.stackable for member in members),
        history_dependent=any(member.history_dependent for member in members),
        columns=tuple(dict.fromkeys(column for member in members for column in member.columns)),
    )


def compute_features(panel, name, reference_symbols=None, sources=None):
    """Computes feature set `name` for every symbol of `panel`.

    Args:
        panel: a `Panel`.
        name: a registered feature set name or a `+` union.
        reference_symbols: dict role -> symbol for cross-asset sets (see
            `keras_synapse.features.references`). Defaults to `None` (no
            references).
        sources: where the reference series are, a `Panel` or dict symbol
            -> bars. Defaults to `None`: `panel`.

    Returns:
        A dict symbol -> float64 frame indexed like the symbol's bars, with the
        warm-up rows dropped.
    """
    feature_set = get_feature_set(name)
    sources = panel if sources is None else sources
    return {
        symbol: feature_set.compute(bars, resolve_references(feature_set, sources, reference_symbols, symbol))
        .iloc[feature_set.warmup - 1 :]
        for symbol, bars in panel.items()
    }
