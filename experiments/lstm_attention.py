"""Stacked LSTM with multi-head self-attention and a residual (seeds 000 and 003).

    python -m keras_synapse.train experiments/lstm_attention.py
    python -m keras_synapse.train experiments/lstm_attention.py --quick
    python -m keras_synapse.train experiments/lstm_attention.py --set lstm_units=200,100 --set num_heads=8  # seed 003's size

Result on the offline sample (493 s with other jobs on the CPU; 36,338
parameters): test IC -0.016 [-0.049, +0.018], directional accuracy 0.510
[0.497, 0.526]: no detectable edge.
"""

import dataclasses

import shared_backbone


def get_config(quick=False):
    return dataclasses.replace(shared_backbone.get_config(quick), name="lstm_attention", model="lstm_attention",
                               dropout=0.3)
