"""Stacked LSTM with multi-head self-attention and a residual (seeds 000 and 003).

    python -m keras_synapse.train experiments/lstm_attention.py
    python -m keras_synapse.train experiments/lstm_attention.py --quick
    python -m keras_synapse.train experiments/lstm_attention.py --set lstm_units=200,100 --set num_heads=8  # seed 003's size

Result on the offline sample (235 s while other jobs shared the CPU; 37,112
parameters): test IC +0.003 [-0.028, +0.031], directional accuracy 0.509
[0.495, 0.524], minimum detectable IC 0.041: no detectable edge.
"""

import dataclasses

import shared_backbone


def get_config(quick=False):
    return dataclasses.replace(shared_backbone.get_config(quick), name="lstm_attention", model="lstm_attention",
                               dropout=0.3)
