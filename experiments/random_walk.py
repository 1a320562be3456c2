"""The shared backbone on driftless random walks: nothing to find, so it must say so.

    python -m keras_synapse.train experiments/random_walk.py
    python -m keras_synapse.bench edge null --seeds 20   # one universe and one weight seed per run

A synthetic universe with `signal_strength=0`: market, sector and
idiosyncratic shocks, volatility regimes, volume that rises with volatility,
and no predictable part at all (see `keras_synapse.data.synthetic`). Any edge
a run reports here is a false one. The model is the main job's; ten symbols
of five years and up to 10 epochs keep twenty runs affordable.

Result of `bench edge null --seeds 20` with the main model's highway (26 min
on the 2-core CPU): no seed of 20 claimed an edge; within-fold rank ICs from
-0.059 to +0.062, mean -0.006, the closest call seed 4 (interval low
-0.008). The network without the highway: one false edge in 20 (seed 0, IC
+0.055, its interval clearing zero by 0.002), the rate a two-sided 95%
interval allows.
"""

import dataclasses

import shared_backbone


def get_config(quick=False):
    config = dataclasses.replace(shared_backbone.get_config(quick), name="random_walk",
                                 data="synthetic:num_symbols=10,num_bars=1260,signal_strength=0.0,seed=0")
    return config if quick else dataclasses.replace(config, epochs=10, patience=5)
