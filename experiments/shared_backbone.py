"""The seed-004 shared-backbone LSTM, trained with a protocol that can learn weak edges.

    python -m keras_synapse.train experiments/shared_backbone.py
    python -m keras_synapse.train experiments/shared_backbone.py --quick   # smoke run
    python -m keras_synapse.tune experiments/shared_backbone.py --max-trials 20   # search `search_space`

The model is seed 004's (LSTM 64 -> LSTM 32 with BatchNorm, Dense 16, tanh
head; windows of 20 bars, a 5-bar volatility-scaled forward-return label, 3
gapped folds, test 0.2, gap 5). The training protocol is not, because seed
004's does not learn edges of the size real markets have. On a planted AR(1)
edge with oracle IC 0.05 (20 symbols x 16 years, `keras_synapse.data.planted`;
the oracle's IC on the test windows was 0.032) the seed's protocol reached
test IC +0.004 while a ridge on the same bars got 0.015. Measured on such
universes, what each change is for ("recovery" is the correlation of the
network's test predictions with the oracle's, a low-noise measure):

- `monitor="val_ic"`, `patience=3`, `epochs=10`: early stopping (and the
  weights it restores) follows the validation IC. Seed 004's `val_loss`
  includes the L2 penalty, so it kept falling and early stopping never fired
  in 25 epochs; the weights kept were those of the last epoch.
- `stride=1`, `batch_size=256`: every window trains (seed 004 used one in
  five); the larger batch pays for the five times more windows per epoch
  (2.5x the samples/s of batch 64 on this CPU, see README Performance).
  Validation and test windows end at every bar whatever the stride.
- `dropout=0.1`, `recurrent_dropout=0`, `dense_dropout=0.1`, `l2=0`: seed
  004's 0.45 / 0.3 / 0.36 dropout and L2 0.006 hold a weak signal's
  gradient below the noise: recovery 0.01, against 0.08-0.15 with these
  lighter settings. Early stopping on the validation IC is the regularizer
  instead: on overlapping windows the network memorizes label noise within
  a few epochs (at oracle IC 0.2, training directional accuracy reached
  0.64 by epoch 10 while the validation IC peaked at epochs 1-4), so the
  epoch it keeps is an early one.
- `loss="huber"`: the volatility-scaled target is heavy-tailed (variance
  1.7-2.4 on the planted universes, the trailing volatility lagging each
  jump in regime); Huber caps the pull of those windows (recovery 0.12
  against 0.08 with MSE: one universe and one seed each, weak evidence,
  kept because the tails are real).

Even so the network recovers far less of a weak linear edge than a ridge:
at oracle IC 0.08, recovery 0.15 against the last-bar ridge's 0.77. Trained
on the noise-free oracle it recovers 0.94, so the shortfall is label noise,
not capacity; averaging five seeds raised it to 0.25 at five times the cost.
`python -m keras_synapse.bench edge power` measures the result at realistic
strengths, and every run's verdict says whether the model beat its best
baseline (README, "Does the verdict tell the truth?").

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
    }
