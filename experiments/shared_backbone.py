"""The shared-backbone LSTM with a linear highway, trained with a protocol that can learn weak edges.

    python -m keras_synapse.train experiments/shared_backbone.py
    python -m keras_synapse.train experiments/shared_backbone.py --quick   # smoke run
    python -m keras_synapse.tune experiments/shared_backbone.py --max-trials 20   # search `search_space`

The network is the shared-backbone design's (LSTM 64 -> LSTM 32 with
BatchNorm, Dense 16, tanh head; windows of 20 bars, a 5-bar
volatility-scaled forward-return label, 3 gapped folds, test 0.2, gap 5),
with one addition: a linear highway into the head's pre-activation
(`highway_bars=1`, `keras_synapse.models.highway`). The design's own model
and protocol, unchanged, are `experiments/original_backbone.py`, the
reference every benchmark trains beside this one.

What each kept piece buys, measured on planted edges of realistic size
(`keras_synapse.data.planted`, 20 symbols x 16 years, oracle IC 0.05;
"recovery" is the correlation of test predictions with the oracle's, a
low-noise measure; README, "Does the verdict tell the truth?", has the
benchmark):

- **The highway**: a ridge on the last bar's features, fitted in closed form
  on each fold's training windows (penalty chosen on the early-stopping
  carve-out) and frozen, added to the recurrent path's score, whose last
  layer starts at zero: training starts from the ridge and the network
  learns the residual. Without it the network recovered 0.15 of a linear
  edge where a last-bar ridge recovered 0.77 (the design's protocol: 0.01);
  the network can represent these edges (0.94 trained on the noise-free
  oracle) but not learn them through label noise at this size. With it the
  main experiment reached 98-100% of the oracle's within-fold rank IC on
  `ar1` and found the edge in every run (`bench edge power`). One bar,
  not five or twenty: a ridge on the last 1 / 2 / 5 / 20 bars recovered
  0.67-0.78 / 0.50-0.68 / 0.39-0.60 / 0.22-0.41 of the `ar1` oracle (two
  universes, this feature set); only the `volume` kind gained from five
  bars (0.06-0.41 to 0.18-0.55, three universes).
- **The network's share** (0, 0.25, 0.5 or 1), chosen after training on the
  carve-out by the one-standard-error rule: the carve-out also chose the
  network's epoch, so it flatters the network; a share whose gain is within
  one standard error of the ridge's is not taken. On a planted `ar1`
  universe (20 symbols, oracle IC 0.08) the network's best share looked
  +0.019 better on the carve-out and was 0.042 worse than the ridge on the
  test fold; the rule keeps the ridge there.
- `monitor="val_ic"`, `patience=3`, `epochs=10`: early stopping (and the
  weights it restores) follows the validation IC. The design's `val_loss`
  includes the L2 penalty, so it kept falling and early stopping never fired
  in 25 epochs.
- `stride=1`, `batch_size=256`: every window trains (the design used one in
  five); the larger batch pays for the five times more windows per epoch.
  Validation and test windows end at every bar whatever the stride.
- `dropout=0.1`, `recurrent_dropout=0`, `dense_dropout=0.1`, `l2=0`: the
  design's 0.45 / 0.3 / 0.36 dropout and L2 0.006 hold a weak signal's
  gradient below the noise (recovery 0.01 against 0.08-0.15); early
  stopping on the validation IC regularizes instead: on overlapping windows
  the network memorizes label noise within a few epochs.
- `loss="huber"`: the volatility-scaled target is heavy-tailed (variance
  1.7-2.4 on the planted universes); Huber caps the pull of those windows.

What the network adds beyond the ridge is where the edge is nonlinear, and
only when the carve-out supports it; the run prints each fit's share and
the verdict compares the model with the ridge baselines on the same windows.
Measured alternatives not kept: averaging five weight seeds (recovery 0.15
to 0.25 at five times the cost, `ensemble_seeds`), a one-layer LSTM (0.21),
universe-relative features (`universe_features`: +0.1-0.2 recovery on the
`cross_sectional` kind, none on `ar1`; not the default because serving
scores one symbol's bars at a time).

Result on the offline sample (seed 42): see the README's "What a run prints".
"""

import dataclasses

from keras_synapse.config import ExperimentConfig


def get_config(quick=False):
    config = ExperimentConfig(name="shared_backbone", stride=1, batch_size=256, monitor="val_ic", patience=3,
                              epochs=10, dropout=0.1, recurrent_dropout=0.0, dense_dropout=0.1, l2=0.0,
                              loss="huber", highway_bars=1)
    if quick:
        # A smoke run skips the permutation importance (a prediction per feature per fold).
        config = dataclasses.replace(config, epochs=2, patience=2, feature_importance=False)
    return config


def search_space(hp):
    """What `keras_synapse.tune` searches: config field -> value drawn from `hp`, defaults as above."""
    return {
        "lstm_units": (hp.Choice("lstm_units_0", [32, 64, 128], default=64),
                       hp.Choice("lstm_units_1", [16, 32], default=32)),
        "dropout": hp.Float("dropout", 0.0, 0.5, step=0.05, default=0.1),
        "learning_rate": hp.Float("learning_rate", 1e-4, 3e-3, sampling="log", default=0.0008),
        "sequence_length": hp.Choice("sequence_length", [10, 20, 40], default=20),
        "loss": hp.Choice("loss", ["huber", "mse", "correlation_aware:0.5"], default="huber"),
        "highway_bars": hp.Choice("highway_bars", [0, 1, 5], default=1),
    }
