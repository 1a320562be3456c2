"""The shared backbone on driftless random walks: nothing to find, so it must say so.

    python -m keras_synapse.train experiments/random_walk.py
    python -m keras_synapse.bench edge null --seeds 20   # one universe and one weight seed per run

A synthetic universe with `signal_strength=0`: market, sector and
idiosyncratic shocks, volatility regimes, volume that rises with volatility,
and no predictable part at all (see `keras_synapse.data.synthetic`). Any edge
a run reports here is a false one. The model is the main job's; ten symbols
of five years and up to 10 epochs keep twenty runs affordable.

Result of `bench edge null --seeds 20` (26 min on the 2-core CPU): no seed
claimed an edge; ICs from -0.094 to +0.064, mean -0.019 (SD 0.043).
"""

import dataclasses

import shared_backbone


def get_config(quick=False):
    config = dataclasses.replace(shared_backbone.get_config(quick), name="random_walk",
                                 data="synthetic:num_symbols=10,num_bars=1260,signal_strength=0.0,seed=0")
    return config if quick else dataclasses.replace(config, epochs=10, patience=5)
