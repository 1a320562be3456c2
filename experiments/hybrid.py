"""Hybrid inputs (seed 002): a raw OHLCV sequence plus engineered features of the last bar.

    python -m keras_synapse.train experiments/hybrid.py
    python -m keras_synapse.train experiments/hybrid.py --quick

The sequence is the stationary raw-OHLCV set (log open/high/low/close relative
to the previous close, log volume vs its mean); the static vector is the
TA-Lib technical set at the window's last bar, concatenated to every time step
of the shared backbone (set `model=transformer` to give it its own token).

Result on the offline sample (324 s with other jobs on the CPU; 36,457
parameters): test IC -0.033 [-0.067, +0.005], directional accuracy 0.502
[0.487, 0.517]: no detectable edge.
"""

import dataclasses

import shared_backbone


def get_config(quick=False):
    return dataclasses.replace(shared_backbone.get_config(quick), name="hybrid", features="raw_ohlcv",
                               static_features="technical")
