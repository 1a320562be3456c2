"""A Transformer encoder on the sample (seed 002): learned positions, 2 pre-LN blocks, last-step pooling.

    python -m keras_synapse.train experiments/transformer.py
    python -m keras_synapse.train experiments/transformer.py --quick
    python -m keras_synapse.train experiments/transformer.py --set positional_encoding=sinusoidal --set causal_mask=true

Same windows, label, folds and baselines as the shared backbone, so the two
compare directly.

Result on the offline sample (228 s while other jobs shared the CPU; 18,232
parameters): test IC -0.003 [-0.034, +0.028], directional accuracy 0.504
[0.494, 0.515], minimum detectable IC 0.044: no detectable edge.
"""

import dataclasses

import shared_backbone


def get_config(quick=False):
    return dataclasses.replace(shared_backbone.get_config(quick), name="transformer", model="transformer",
                               dropout=0.1, learning_rate=0.0005)
