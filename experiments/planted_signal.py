"""The main experiment on a universe with a planted edge of realistic size.

    python -m keras_synapse.train experiments/planted_signal.py
    python -m keras_synapse.bench edge planted   # the same run, its IC beside the oracle's

Twenty synthetic symbols, sixteen years of daily bars, volatility regimes, and
time-series momentum in daily returns (`signal=ar1`, see
`keras_synapse.data.planted`) sized so that the oracle, which knows the
planted component exactly, has a population IC of 0.05 at the 5-bar
horizon: the size of published alphas (Qlib's Alpha360: LSTM 0.045, GRU
0.049, LightGBM 0.040). The model, its protocol and the folds are the main
experiment's, unchanged; every run reports its minimum detectable IC and the
model against each baseline on the same windows. `--quick` (ten symbols, one
gapped test fold of the last 40% of 12 years, a stronger edge of oracle IC
0.08, up to 4 epochs) is what `tests/test_edge_truth.py` runs, beside
`experiments/original_backbone.py` on the same universe and folds.

Measured there (`--quick`, seed 42): the main experiment's within-fold rank
IC +0.105 against the oracle's +0.098 on the same test windows (107%, the
edge found); the design's original protocol +0.042 (42%, not found). The
main experiment's network share was 0 in both fits (its carve-out gain,
+0.007 in the fold, was within one standard error), so the head was its
ridge: on a linear edge that is the right answer. README, "Does the verdict
tell the truth?", has the full benchmark.
"""

import dataclasses

import shared_backbone

PLANTED = "synthetic:signal=ar1,seed=1"


def get_config(quick=False):
    config = dataclasses.replace(shared_backbone.get_config(), name="planted_signal")
    if quick:
        return dataclasses.replace(config, data=f"{PLANTED},num_symbols=10,num_bars=3024,oracle_ic=0.08", epochs=4,
                                   patience=2, n_splits=1, test_size=0.4, feature_importance=False)
    return dataclasses.replace(config, data=f"{PLANTED},num_symbols=20,num_bars=4032,oracle_ic=0.05")
