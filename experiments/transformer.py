"""A Transformer encoder on the sample (seed 002): learned positions, 2 pre-LN blocks, last-step pooling.

    python -m keras_synapse.train experiments/transformer.py
    python -m keras_synapse.train experiments/transformer.py --quick
    python -m keras_synapse.train experiments/transformer.py --set positional_encoding=sinusoidal --set causal_mask=true

Same windows, label, folds and baselines as the shared backbone, so the two
compare directly.
"""

import dataclasses

import shared_backbone


def get_config(quick=False):
    return dataclasses.replace(shared_backbone.get_config(quick), name="transformer", model="transformer",
                               dropout=0.1, learning_rate=0.0005)
