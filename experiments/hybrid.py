"""Hybrid inputs (seed 002): a raw OHLCV sequence plus engineered features of the last bar.

    python -m keras_synapse.train experiments/hybrid.py
    python -m keras_synapse.train experiments/hybrid.py --quick

The sequence is the stationary raw-OHLCV set (log open/high/low/close relative
to the previous close, log volume vs its mean); the static vector is the
TA-Lib technical set at the window's last bar, concatenated to every time step
of the shared backbone (set `model=transformer` to give it its own token).

Result on the offline sample (146 s while other jobs shared the CPU; 36,457
parameters): test IC -0.003 [-0.028, +0.023], directional accuracy 0.505
[0.496, 0.515], minimum detectable IC 0.037: no detectable edge, and no
better than the best baseline (momentum, -0.004 [-0.058, +0.048]).
"""

import dataclasses

import shared_backbone


def get_config(quick=False):
    return dataclasses.replace(shared_backbone.get_config(quick), name="hybrid", features="raw_ohlcv",
                               static_features="technical")
