"""The seed-004 shared-backbone LSTM on the offline sample.

    python -m keras_synapse.train experiments/shared_backbone.py
    python -m keras_synapse.train experiments/shared_backbone.py --quick   # smoke run
    python -m keras_synapse.tune experiments/shared_backbone.py --max-trials 20   # search `search_space`

Windows of 20 bars, stride 5, a 5-bar volatility-scaled forward-return label,
3 gapped folds (test 0.2, gap 5), early stopping on a carve-out of each
training fold, then a refit on everything up to the last test fold.

Result on the offline sample (seed 42; 218 s in a fresh virtual environment on
the idle 2-core CPU, 332-457 s while other jobs shared it): test IC -0.024
[95% CI -0.066, +0.015], directional accuracy 0.498 [0.484, 0.513], no
detectable edge, as expected on data with no planted signal; 32,082
parameters with the 8 core features.
"""

import dataclasses

from keras_synapse.config import ExperimentConfig


def get_config(quick=False):
    config = ExperimentConfig(name="shared_backbone")
    if quick:
        config = dataclasses.replace(config, epochs=2, patience=2)
    return config


def search_space(hp):
    """What `keras_synapse.tune` searches: config field -> value drawn from `hp`, defaults as above."""
    return {
        "lstm_units": (hp.Choice("lstm_units_0", [32, 64, 128], default=64),
                       hp.Choice("lstm_units_1", [16, 32], default=32)),
        "dropout": hp.Float("dropout", 0.1, 0.5, step=0.05, default=0.45),
        "learning_rate": hp.Float("learning_rate", 1e-4, 3e-3, sampling="log", default=0.0008),
        "sequence_length": hp.Choice("sequence_length", [10, 20, 40], default=20),
        "loss": hp.Choice("loss", ["mse", "correlation_aware:0.5"], default="mse"),
    }
