"""The seed-004 shared-backbone LSTM on the offline sample.

    python -m keras_synapse.train experiments/shared_backbone.py
    python -m keras_synapse.train experiments/shared_backbone.py --quick   # smoke run

Windows of 20 bars, stride 5, a 5-bar volatility-scaled forward-return label,
3 gapped folds (test 0.2, gap 5), early stopping on a carve-out of each
training fold, then a refit on everything up to the last test fold.
"""

import dataclasses

from keras_synapse.config import ExperimentConfig


def get_config(quick=False):
    config = ExperimentConfig(name="shared_backbone")
    if quick:
        config = dataclasses.replace(config, epochs=2, patience=2)
    return config
